"""An independent segment evaluator in pandas, written from the contract (DESIGN.md
"Segments" and "Data", and the documented definitions of the derived attributes) — not
from clvflow's compiler. The differential test compares clvflow's SQL against it.

Semantics, as the contract states them:

- a test on a missing value is false (so ``not_in``/``not_equals`` skip missing values),
  while ``not:`` is the exact set complement; several keys in one test are ANDed and a bare
  scalar means ``equals``;
- ``between: [low, high]`` is low-inclusive and high-exclusive; ``contains``,
  ``starts_with`` and ``ends_with`` are case-insensitive; ``before``/``after`` are strict,
  ``at_least``/``at_most`` inclusive;
- times: ISO dates/timestamps, ``now``, ``today`` (as_of's midnight), ``N units ago``,
  ``in N units``; ``within: last N units`` is ``[as_of - N, as_of]`` and ``next N units`` is
  ``[as_of, as_of + N]``; a DATE column compares by calendar date (anchors taken to their date);
- ``top_percent: P``: the customers whose value is at least the k-th largest value among the
  customers with a value, k = ceil(N * P / 100), ties included; ``bottom_percent`` symmetric;
- orders placed after ``as_of`` do not exist; ``orders: {where, within, count, total}``
  selects the customer's orders in the window that match ``where`` (an order matches a
  ``where`` on item/product columns when one of its items satisfies the whole ``where``);
  without ``count``/``total`` it means "at least one such order"; ``count`` tests their
  number and ``total`` the sum of their totals (0 when there are none);
- derived attributes: ``orders_count`` and ``total_spent`` are 0 without orders, every other
  derived attribute is missing without orders; RFM scores are ``1 + floor(5 * percent_rank)``
  capped at 5 among customers with at least one order.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from dateutil.relativedelta import relativedelta

Kind = Literal["text", "number", "date", "timestamp", "bool"]

ORDER_KINDS: dict[str, Kind] = {
    "order_id": "text",
    "customer_id": "text",
    "placed_at": "timestamp",
    "total": "number",
}
ITEM_KINDS: dict[str, Kind] = {
    "order_id": "text",
    "product_id": "text",
    "quantity": "number",
    "unit_price": "number",
}
PRODUCT_KINDS: dict[str, Kind] = {
    "product_id": "text",
    "name": "text",
    "category": "text",
    "price": "number",
}
DERIVED_KINDS: dict[str, Kind] = {
    "orders_count": "number",
    "total_spent": "number",
    "avg_order_value": "number",
    "first_order_at": "timestamp",
    "last_order_at": "timestamp",
    "days_since_first_order": "number",
    "days_since_last_order": "number",
    "rfm_recency": "number",
    "rfm_frequency": "number",
    "rfm_monetary": "number",
    "rfm_segment": "text",
    "historical_clv": "number",
}


# ---------------------------------------------------------------- values and data


def parse_cell(text: str, kind: Kind) -> Any:
    """One CSV cell as a Python value of ``kind``; an empty cell is missing (None)."""
    if text == "":
        return None
    if kind == "number":
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    if kind == "bool":
        return {"true": True, "false": False}[text.lower()]
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "timestamp":
        return dt.datetime.fromisoformat(text)
    return text


def frame_from_csv(path: Path, kinds: Mapping[str, Kind]) -> pd.DataFrame:
    """A CSV file as an object-dtype frame of Python values (None for missing)."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
        header = list(rows[0].keys()) if rows else _header(path)
    columns = {
        name: pd.Series([parse_cell(r[name], kinds.get(name, "text")) for r in rows], dtype=object)
        for name in header
    }
    return pd.DataFrame(columns, columns=header)


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


@dataclass
class Shop:
    """The shop's tables (object-dtype frames of Python values) and each column's kind."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    items: pd.DataFrame | None
    products: pd.DataFrame | None
    customer_kinds: dict[str, Kind]
    order_kinds: dict[str, Kind] = field(default_factory=lambda: dict(ORDER_KINDS))
    item_kinds: dict[str, Kind] = field(default_factory=lambda: dict(ITEM_KINDS))
    product_kinds: dict[str, Kind] = field(default_factory=lambda: dict(PRODUCT_KINDS))

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        customer_kinds: Mapping[str, Kind],
        order_kinds: Mapping[str, Kind] | None = None,
        item_kinds: Mapping[str, Kind] | None = None,
        product_kinds: Mapping[str, Kind] | None = None,
    ) -> Shop:
        okinds = {**ORDER_KINDS, **(order_kinds or {})}
        ikinds = {**ITEM_KINDS, **(item_kinds or {})}
        pkinds = {**PRODUCT_KINDS, **(product_kinds or {})}
        items = folder / "order_items.csv"
        products = folder / "products.csv"
        return cls(
            customers=frame_from_csv(folder / "customers.csv", customer_kinds),
            orders=frame_from_csv(folder / "orders.csv", okinds),
            items=frame_from_csv(items, ikinds) if items.exists() else None,
            products=frame_from_csv(products, pkinds) if products.exists() else None,
            customer_kinds=dict(customer_kinds),
            order_kinds=okinds,
            item_kinds=ikinds,
            product_kinds=pkinds,
        )


# ---------------------------------------------------------------- times


_UNITS = {"day": "days", "week": "weeks", "month": "months", "year": "years"}
_AGO = re.compile(r"^(\d+) (day|week|month|year)s ago$")
_IN = re.compile(r"^in (\d+) (day|week|month|year)s$")
_WINDOW = re.compile(r"^(last|next) (\d+) (day|week|month|year)s$")


def _delta(n: str, unit: str) -> relativedelta:
    return relativedelta(**{_UNITS[unit]: int(n)})  # type: ignore[arg-type]


def resolve_time(value: Any, as_of: dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    text = str(value).strip().lower()
    if text == "now":
        return as_of
    if text == "today":
        return dt.datetime(as_of.year, as_of.month, as_of.day)
    if m := _AGO.match(text):
        return as_of - _delta(m.group(1), m.group(2))
    if m := _IN.match(text):
        return as_of + _delta(m.group(1), m.group(2))
    return dt.datetime.fromisoformat(text)


def resolve_window(value: str, as_of: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    m = _WINDOW.match(value.strip().lower())
    if m is None:
        raise ValueError(f"not a window: {value!r}")
    shift = _delta(m.group(2), m.group(3))
    if m.group(1) == "last":
        return as_of - shift, as_of
    return as_of, as_of + shift


# ---------------------------------------------------------------- one test on one value


def _operand(value: Any, kind: Kind, as_of: dt.datetime) -> Any:
    if kind == "date":
        return resolve_time(value, as_of).date()
    if kind == "timestamp":
        return resolve_time(value, as_of)
    return value


def _threshold(population: list[Any], percent: float, largest: bool) -> Any:
    """The k-th largest (or smallest) value, k = ceil(N * P / 100)."""
    ordered = sorted(population, reverse=largest)
    k = math.ceil(Fraction(len(ordered)) * Fraction(str(percent)) / 100)
    return ordered[k - 1]


def check(
    value: Any,
    kind: Kind,
    test: Any,
    as_of: dt.datetime,
    population: list[Any] | None = None,
) -> bool:
    """Does ``value`` pass ``test`` (a mapping of operators, or a bare scalar)?"""
    ops: dict[str, Any] = test if isinstance(test, dict) else {"equals": test}
    return all(_one(value, kind, op, arg, as_of, population) for op, arg in ops.items())


def _one(
    v: Any, kind: Kind, op: str, arg: Any, as_of: dt.datetime, population: list[Any] | None
) -> bool:
    if op == "is_set":
        return (v is not None) is bool(arg)
    if v is None:
        return False
    lit: Callable[[Any], Any] = lambda a: _operand(a, kind, as_of)  # noqa: E731
    if op == "equals":
        return bool(v == lit(arg))
    if op == "not_equals":
        return bool(v != lit(arg))
    if op == "in":
        return any(v == lit(a) for a in arg)
    if op == "not_in":
        return all(v != lit(a) for a in arg)
    if op in ("at_least",):
        return bool(v >= lit(arg))
    if op == "at_most":
        return bool(v <= lit(arg))
    if op in ("greater_than", "after"):
        return bool(v > lit(arg))
    if op in ("less_than", "before"):
        return bool(v < lit(arg))
    if op == "between":
        low, high = arg
        return bool(lit(low) <= v < lit(high))
    if op == "contains":
        return str(arg).lower() in v.lower()
    if op == "starts_with":
        return bool(v.lower().startswith(str(arg).lower()))
    if op == "ends_with":
        return bool(v.lower().endswith(str(arg).lower()))
    if op == "within":
        start, end = resolve_window(arg, as_of)
        if kind == "date":
            return start.date() <= v <= end.date()
        return start <= v <= end
    if op in ("top_percent", "bottom_percent"):
        assert population is not None, f"{op} needs the population"
        values = [p for p in population if p is not None]
        if not values:
            return False
        limit = _threshold(values, arg, largest=op == "top_percent")
        return bool(v >= limit) if op == "top_percent" else bool(v <= limit)
    raise ValueError(f"unknown operator {op!r}")


# ---------------------------------------------------------------- derived attributes


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False)]


def _exact_sum(values: list[Any]) -> float:
    """The sum as the correctly rounded float of the exact sum."""
    return float(sum((Fraction(v) for v in values), Fraction(0)))


def _percent_rank_scores(values: dict[str, Any]) -> dict[str, int]:
    """``1 + floor(5 * percent_rank)`` capped at 5, percent_rank = (rank - 1) / (n - 1)
    with rank = 1 + the number of smaller values (ties share the lowest rank)."""
    n = len(values)
    ranks = pd.Series(values).rank(method="min")
    out = {}
    for key, rank in ranks.items():
        pr = 0.0 if n == 1 else (float(rank) - 1.0) / (n - 1)
        out[str(key)] = min(5, 1 + math.floor(5 * pr))
    return out


def _rfm_segment(r: int, f: int) -> str:
    rules: list[tuple[str, Callable[[int, int], bool]]] = [
        ("champions", lambda r, f: r >= 4 and f >= 4),
        ("loyal", lambda r, f: r >= 3 and f >= 3),
        ("new", lambda r, f: r >= 4 and f == 1),
        ("potential_loyalists", lambda r, f: r >= 3 and f <= 2),
        ("cant_lose", lambda r, f: r <= 2 and f >= 4),
        ("at_risk", lambda r, f: r <= 2 and f == 3),
        ("hibernating", lambda r, f: r == 2 and f <= 2),
        ("lost", lambda r, f: r == 1 and f <= 2),
    ]
    for name, rule in rules:
        if rule(r, f):
            return name
    raise AssertionError(f"no RFM rule for R={r} F={f}")


def placed_orders(shop: Shop, as_of: dt.datetime) -> list[dict[str, Any]]:
    """Orders placed at or before ``as_of`` (later orders do not exist yet)."""
    return [
        o for o in _records(shop.orders) if o["placed_at"] is not None and o["placed_at"] <= as_of
    ]


def customer_facts(shop: Shop, as_of: dt.datetime) -> pd.DataFrame:
    """Every customer with the derived attributes (object dtype, None when missing)."""
    customers = shop.customers.set_index("customer_id", drop=False)
    ids = [str(c) for c in customers.index]
    by_customer: dict[str, list[dict[str, Any]]] = {c: [] for c in ids}
    for order in placed_orders(shop, as_of):
        if order["customer_id"] in by_customer:
            by_customer[order["customer_id"]].append(order)
    buyers = {c: os for c, os in by_customer.items() if os}
    spent = {c: _exact_sum([o["total"] for o in os]) for c, os in buyers.items()}
    first = {c: min(o["placed_at"] for o in os) for c, os in buyers.items()}
    last = {c: max(o["placed_at"] for o in os) for c, os in buyers.items()}
    recency = _percent_rank_scores(last) if buyers else {}
    frequency = _percent_rank_scores({c: len(os) for c, os in buyers.items()}) if buyers else {}
    monetary = _percent_rank_scores(spent) if buyers else {}
    columns: dict[str, list[Any]] = {
        "orders_count": [len(by_customer[c]) for c in ids],
        "total_spent": [spent.get(c, 0) for c in ids],
        "avg_order_value": [
            float(Fraction(spent[c]) / len(buyers[c])) if c in buyers else None for c in ids
        ],
        "first_order_at": [first.get(c) for c in ids],
        "last_order_at": [last.get(c) for c in ids],
        "days_since_first_order": [
            (as_of.date() - first[c].date()).days if c in buyers else None for c in ids
        ],
        "days_since_last_order": [
            (as_of.date() - last[c].date()).days if c in buyers else None for c in ids
        ],
        "rfm_recency": [recency.get(c) for c in ids],
        "rfm_frequency": [frequency.get(c) for c in ids],
        "rfm_monetary": [monetary.get(c) for c in ids],
        "rfm_segment": [
            _rfm_segment(recency[c], frequency[c]) if c in buyers else None for c in ids
        ],
        # average order value × purchase frequency × lifespan = the total spent to date;
        # like every derived value but orders_count and total_spent, missing without orders.
        "historical_clv": [spent.get(c) for c in ids],
    }
    facts = pd.DataFrame(
        {k: pd.Series(v, index=customers.index, dtype=object) for k, v in columns.items()}
    )
    own = customers.drop(columns=[c for c in customers.columns if c in DERIVED_KINDS])
    return pd.concat([own, facts], axis=1)


# ---------------------------------------------------------------- conditions


def _attribute_names(cond: Any) -> set[str]:
    ((key, value),) = cond.items()
    if key in ("all", "any"):
        return set().union(*(_attribute_names(c) for c in value))
    if key == "not":
        return _attribute_names(value)
    return {key}


@dataclass
class Evaluator:
    """Evaluates conditions on one shop as of ``as_of``; ``segments`` resolves references."""

    shop: Shop
    as_of: dt.datetime
    segments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.facts = customer_facts(self.shop, self.as_of)
        self.kinds: dict[str, Kind] = {
            **{k: v for k, v in self.shop.customer_kinds.items() if k not in DERIVED_KINDS},
            **DERIVED_KINDS,
        }
        self.placed = placed_orders(self.shop, self.as_of)
        # Each order's items, each joined to its product (product columns missing when
        # the product is unknown).
        products = {p["product_id"]: p for p in _records(self.shop.products)}
        blank = dict.fromkeys(self.shop.product_kinds)
        self.items: dict[str, list[dict[str, Any]]] = {}
        for item in _records(self.shop.items):
            row = {**blank, **products.get(item["product_id"], {}), **item}
            self.items.setdefault(item["order_id"], []).append(row)
        self.row_kinds: dict[str, Kind] = {
            **self.shop.product_kinds,
            **self.shop.item_kinds,
            **self.shop.order_kinds,
        }

    def members(self, where: Any) -> list[str]:
        mask = self.condition(where)
        return sorted(str(c) for c in mask[mask].index)

    def condition(self, cond: Any) -> pd.Series:
        assert isinstance(cond, dict) and len(cond) == 1, cond
        ((key, value),) = cond.items()
        if key == "all":
            out = pd.Series(True, index=self.facts.index)
            for c in value:
                out &= self.condition(c)
            return out
        if key == "any":
            out = pd.Series(False, index=self.facts.index)
            for c in value:
                out |= self.condition(c)
            return out
        if key == "not":
            return ~self.condition(value)
        if key == "segment":
            return self.condition(self.segments[value])
        if key == "orders":
            return self.orders(value)
        kind = self.kinds[key]
        column = self.facts[key]
        population = list(column)
        return column.map(lambda v: check(v, kind, value, self.as_of, population)).astype(bool)

    def orders(self, spec: Mapping[str, Any]) -> pd.Series:
        """The customers' orders in the window that match ``where``, then count/total."""
        start, end = (
            resolve_window(spec["within"], self.as_of) if "within" in spec else (None, None)
        )
        count: dict[str, int] = {}
        totals: dict[str, list[Any]] = {}
        for order in self.placed:
            if start is not None and not start <= order["placed_at"] <= end:
                continue
            if "where" in spec and not self._order_matches(order, spec["where"]):
                continue
            cid = order["customer_id"]
            count[cid] = count.get(cid, 0) + 1
            totals.setdefault(cid, []).append(order["total"])
        ids = [str(c) for c in self.facts.index]
        n = [count.get(c, 0) for c in ids]
        if "count" not in spec and "total" not in spec:
            return pd.Series([k > 0 for k in n], index=self.facts.index, dtype=bool)
        ok = [True] * len(ids)
        for i, c in enumerate(ids):
            if "count" in spec:
                ok[i] = ok[i] and check(n[i], "number", spec["count"], self.as_of)
            if "total" in spec:
                total = _exact_sum(totals.get(c, []))  # 0 when there are none
                ok[i] = ok[i] and check(total, "number", spec["total"], self.as_of)
        return pd.Series(ok, index=self.facts.index, dtype=bool)

    def _order_matches(self, order: dict[str, Any], where: Any) -> bool:
        if _attribute_names(where) <= set(self.shop.order_kinds):
            return self._row(order, where)
        # Tests on item or product columns: one item must satisfy the whole condition.
        return any(
            self._row({**item, **order}, where) for item in self.items.get(order["order_id"], [])
        )

    def _row(self, row: Mapping[str, Any], cond: Any) -> bool:
        ((key, value),) = cond.items()
        if key == "all":
            return all(self._row(row, c) for c in value)
        if key == "any":
            return any(self._row(row, c) for c in value)
        if key == "not":
            return not self._row(row, value)
        return check(row[key], self.row_kinds[key], value, self.as_of)


def evaluate(
    shop: Shop, where: Any, as_of: dt.datetime, segments: Mapping[str, Any] | None = None
) -> list[str]:
    """Sorted ids of the customers meeting ``where``; ``segments`` resolves references."""
    return Evaluator(shop, as_of, segments or {}).members(where)
