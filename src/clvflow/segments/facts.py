"""``customer_facts``: every customer with just the columns some predicate reads.

Compiling a segment records what its predicate needs (``Needs``): the customer's own
columns, the derived attributes, and one ``OrdersFact`` per distinct ``orders: {where,
within}`` selection. ``facts_sql`` then builds the ``customer_facts`` relation for exactly
those needs:

- the order aggregate (one ``GROUP BY customer_id`` over orders) only when a derived
  attribute or an order-level ``orders:`` test is used, with only the aggregates asked
  for, and the RFM windows only for ``rfm_*``;
- every ``orders:`` test on order columns as ``COUNT(*) FILTER (WHERE …)`` (and ``SUM``)
  columns of that same aggregate, so several tests cost one pass over orders;
- every ``orders:`` test on item or product columns in one more pass over orders × items
  × products, grouped by customer (by order first when a test counts orders or sums
  their totals, since an order matches when one of its items does).

Several segments compiled with one ``Needs`` share these columns, which is how a run
builds the facts once for all its segments (``clvflow.segments.evaluation``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from clvflow.segments.attributes import DERIVED, PREDICTED, sql_date, sql_timestamp
from clvflow.segments.times import Window

# Derived attribute → the order aggregates it is computed from.
_AGGREGATES: dict[str, tuple[str, ...]] = {
    "orders_count": ("orders_count",),
    "total_spent": ("total_spent",),
    "historical_clv": ("total_spent",),
    "avg_order_value": ("avg_order_value",),
    "first_order_at": ("first_order_at",),
    "days_since_first_order": ("first_order_at",),
    "last_order_at": ("last_order_at",),
    "days_since_last_order": ("last_order_at",),
    "rfm_recency": ("last_order_at",),
    "rfm_frequency": ("orders_count",),
    "rfm_monetary": ("total_spent",),
    "rfm_segment": ("last_order_at", "orders_count"),
}
_AGGREGATE_SQL = {
    "orders_count": "COUNT(*)",
    "total_spent": "SUM(o.total)",
    "avg_order_value": "AVG(o.total)",
    "first_order_at": "MIN(o.placed_at)",
    "last_order_at": "MAX(o.placed_at)",
}
# RFM score alias → (its attribute, rfm_segment, the aggregate it ranks)
_SCORES = {
    "r": ("rfm_recency", "rfm_segment", "last_order_at"),
    "f": ("rfm_frequency", "rfm_segment", "orders_count"),
    "m": ("rfm_monetary", "", "total_spent"),
}
_RFM_CASE = """CASE
        WHEN s.r >= 4 AND s.f >= 4 THEN 'champions'
        WHEN s.r >= 3 AND s.f >= 3 THEN 'loyal'
        WHEN s.r >= 4 AND s.f = 1 THEN 'new'
        WHEN s.r >= 3 THEN 'potential_loyalists'
        WHEN s.f >= 4 THEN 'cant_lose'
        WHEN s.f = 3 THEN 'at_risk'
        WHEN s.r = 2 THEN 'hibernating'
        WHEN s.r = 1 THEN 'lost'
      END"""


@dataclass
class OrdersFact:
    """The customer's orders placed by ``as_of`` that are in ``window`` and match ``where``
    (SQL over ``o``, and ``i``/``p`` when ``items``), as columns of ``customer_facts``:
    ``any_column`` (at least one), ``count_column`` (how many), ``total_column`` (the
    sum of their totals, 0 when none)."""

    index: int
    prefix: str
    where: str | None
    window: Window | None
    items: bool
    any: bool = False
    count: bool = False
    total: bool = False

    @property
    def any_column(self) -> str:
        return f"{self.prefix}{self.index}_any"

    @property
    def count_column(self) -> str:
        return f"{self.prefix}{self.index}_count"

    @property
    def total_column(self) -> str:
        return f"{self.prefix}{self.index}_total"

    @property
    def counted(self) -> bool:
        """Whether the number (or total) of matching orders is needed, not just one."""
        return self.count or self.total

    def condition(self) -> str:
        """The test one order (or, with ``items``, one item row) must pass."""
        parts: list[str] = []
        if self.window is not None:
            start, end = sql_timestamp(self.window.start), sql_timestamp(self.window.end)
            parts.append(f"o.placed_at BETWEEN {start} AND {end}")
        if self.where is not None:
            parts.append(self.where)
        return " AND ".join(parts) if parts else "TRUE"

    def columns(self) -> list[str]:
        return [
            name
            for name, wanted in (
                (self.any_column, self.any),
                (self.count_column, self.count),
                (self.total_column, self.total),
            )
            if wanted
        ]


@dataclass
class Needs:
    """What the predicates compiled so far read from ``customer_facts``."""

    as_of: dt.datetime
    customer_columns: dict[str, str]
    columns: set[str] = field(default_factory=set)
    derived: set[str] = field(default_factory=set)
    orders: dict[tuple[str | None, Window | None, bool], OrdersFact] = field(default_factory=dict)
    # names the relation of the predicted attributes (customer_id and one column each);
    # its argument says whether a predicate reads them (an unfit model is then an error)
    predictions: Callable[[bool], str] | None = None

    @property
    def prefix(self) -> str:
        """A prefix for the orders-test columns that no customer column starts with."""
        prefix = "orders__"
        while any(c.startswith(prefix) for c in self.customer_columns):
            prefix = "_" + prefix
        return prefix

    def use(self, attribute: str) -> None:
        (self.derived if attribute in DERIVED else self.columns).add(attribute)

    def orders_fact(self, where: str | None, window: Window | None, items: bool) -> OrdersFact:
        key = (where, window, items)
        if key not in self.orders:
            self.orders[key] = OrdersFact(len(self.orders) + 1, self.prefix, where, window, items)
        return self.orders[key]


def facts_sql(needs: Needs, *, full: bool = False, item_tests: bool = True) -> str:
    """The CTEs defining ``customer_facts`` for ``needs`` (``full``: every attribute;
    ``item_tests=False``: without the ``orders:`` tests on item or product columns)."""
    at = sql_timestamp(needs.as_of)
    derived = set(DERIVED) if full else needs.derived
    order = list(_AGGREGATE_SQL)
    aggregates = sorted(
        {a for d in derived if d not in PREDICTED for a in _AGGREGATES[d]}, key=order.index
    )
    scores = [a for a, d in _SCORES.items() if d[0] in derived or d[1] in derived]
    flat = [f for f in needs.orders.values() if not f.items and f.columns()]

    ctes: list[str] = []
    select = [f'c."{c}"' for c in _own_columns(needs, full)]
    joins: list[str] = []
    if aggregates or flat:
        ctes.extend(_order_facts(at, aggregates, flat, scores))
        source = "scored" if scores else "order_facts"
        joins.append(f"LEFT JOIN {source} AS s ON s.customer_id = c.customer_id")
        select.extend(_derived_columns(derived - set(PREDICTED), needs.as_of))
        for fact in flat:
            select.extend(_fact_columns(fact, "s"))
    predicted = [d for d in PREDICTED if d in derived]
    if predicted:
        if needs.predictions is None:
            raise ValueError("predicted attributes need Needs.predictions")
        relation = needs.predictions(bool(needs.derived & set(PREDICTED)))
        joins.append(f"LEFT JOIN {relation} AS pr ON pr.customer_id = c.customer_id")
        select.extend(f"pr.{d} AS {d}" for d in predicted)
    if item_tests and item_facts(needs):
        ctes.extend(item_facts_sql(needs))
        joins.append("LEFT JOIN item_facts AS it ON it.customer_id = c.customer_id")
        select.extend(item_fact_columns(needs, "it"))
    columns = ",\n           ".join(select)
    body = f"SELECT {columns}\n    FROM customers AS c"
    body += "".join(f"\n    {j}" for j in joins)
    ctes.append(f"customer_facts AS (\n    {body}\n  )")
    return ",\n  ".join(ctes)


def item_facts(needs: Needs) -> list[OrdersFact]:
    """The ``orders:`` tests on item or product columns."""
    return [f for f in needs.orders.values() if f.items and f.columns()]


def item_fact_columns(needs: Needs, alias: str) -> list[str]:
    """The ``customer_facts`` columns of those tests, from ``item_facts AS <alias>``."""
    return [c for fact in item_facts(needs) for c in _fact_columns(fact, alias)]


def _own_columns(needs: Needs, full: bool) -> list[str]:
    own = [c for c in needs.customer_columns if c not in DERIVED]
    if full:
        return own
    return [c for c in own if c == "customer_id" or c in needs.columns]


def _order_facts(
    at: str, aggregates: list[str], flat: list[OrdersFact], scores: list[str]
) -> list[str]:
    select = ["o.customer_id", *(f"{_AGGREGATE_SQL[a]} AS {a}" for a in aggregates)]
    for fact in flat:
        condition = fact.condition()
        select.append(f"COUNT(*) FILTER (WHERE {condition}) AS n{fact.index}")
        if fact.total:
            select.append(f"SUM(o.total) FILTER (WHERE {condition}) AS t{fact.index}")
    where = f"o.placed_at <= {at}"
    if not aggregates:  # only orders: tests; other orders need not be grouped
        where += f" AND {_any_of(flat)}"
    columns = ",\n           ".join(select)
    ctes = [
        f"order_facts AS (\n    SELECT {columns}\n    FROM orders AS o\n"
        f"    WHERE {where}\n    GROUP BY o.customer_id\n  )"
    ]
    if scores:
        # ranked among customers only: orders of ids missing from customers do not count
        ranks = ",\n           ".join(f"{_score(_SCORES[s][2])} AS {s}" for s in scores)
        ctes.append(
            f"scored AS (\n    SELECT f.*,\n           {ranks}\n    FROM order_facts AS f\n"
            "    WHERE f.customer_id IN (SELECT customer_id FROM customers)\n  )"
        )
    return ctes


def _any_of(facts: list[OrdersFact]) -> str:
    """The rows some fact counts (the others cannot change any fact)."""
    if len(facts) == 1:
        return facts[0].condition()
    return "(" + " OR ".join(f"({f.condition()})" for f in facts) + ")"


def _score(column: str) -> str:
    rank = f"PERCENT_RANK() OVER (ORDER BY {column})"
    return f"CAST(LEAST(5, 1 + FLOOR(5 * {rank})) AS INTEGER)"


def _derived_columns(derived: set[str], as_of: dt.datetime) -> list[str]:
    day = sql_date(as_of.date())
    exprs = {
        "orders_count": "COALESCE(s.orders_count, 0)",
        "total_spent": "COALESCE(s.total_spent, 0)",
        "avg_order_value": "s.avg_order_value",
        "first_order_at": "s.first_order_at",
        "last_order_at": "s.last_order_at",
        "days_since_first_order": f"{day} - CAST(s.first_order_at AS DATE)",
        "days_since_last_order": f"{day} - CAST(s.last_order_at AS DATE)",
        "rfm_recency": "s.r",
        "rfm_frequency": "s.f",
        "rfm_monetary": "s.m",
        "rfm_segment": _RFM_CASE,
        "historical_clv": "s.total_spent",
    }
    return [f"{exprs[d]} AS {d}" for d in DERIVED if d in derived]


def _fact_columns(fact: OrdersFact, alias: str) -> list[str]:
    out: list[str] = []
    if fact.any:
        if alias == "it":
            out.append(f'COALESCE({alias}.a{fact.index}, FALSE) AS "{fact.any_column}"')
        else:
            out.append(f'COALESCE({alias}.n{fact.index}, 0) > 0 AS "{fact.any_column}"')
    if fact.count:
        out.append(f'COALESCE({alias}.n{fact.index}, 0) AS "{fact.count_column}"')
    if fact.total:
        out.append(f'COALESCE({alias}.t{fact.index}, 0) AS "{fact.total_column}"')
    return out


def item_facts_sql(needs: Needs, customers: str | None = None) -> list[str]:
    """The CTEs ending in ``item_facts``: one pass over orders × items × products for every
    ``orders:`` test on item or product columns, for the customers in the ``customers``
    query (default: all)."""
    at = sql_timestamp(needs.as_of)
    facts = item_facts(needs)
    source = (
        "FROM orders AS o\n    JOIN order_items AS i ON i.order_id = o.order_id\n"
        "    LEFT JOIN products AS p ON p.product_id = i.product_id"
    )
    where = [f"o.placed_at <= {at}"]
    if customers is not None:
        where.append(f"o.customer_id IN ({customers})")
    windows = [f.window for f in facts]
    if len(facts) > 1 and all(w is not None for w in windows):
        # lets the scan skip the orders outside every window
        starts = [w.start for w in windows if w is not None]
        ends = [w.end for w in windows if w is not None]
        where.append(
            f"o.placed_at BETWEEN {sql_timestamp(min(starts))} AND {sql_timestamp(max(ends))}"
        )
    where.append(_any_of(facts))
    filters = "\n      AND ".join(where)
    if not any(f.counted for f in facts):
        # whether any matching item exists: no need to tell orders apart
        flags = ",\n           ".join(f"bool_or({f.condition()}) AS a{f.index}" for f in facts)
        return [
            f"item_facts AS (\n    SELECT o.customer_id,\n           {flags}\n    {source}\n"
            f"    WHERE {filters}\n    GROUP BY o.customer_id\n  )"
        ]
    # an order matches when one of its items does: decide per order, then count orders
    matches = ",\n           ".join(f"bool_or({f.condition()}) AS m{f.index}" for f in facts)
    per_customer: list[str] = []
    for f in facts:
        per_customer.append(f"bool_or(m{f.index}) AS a{f.index}")
        per_customer.append(f"COUNT(*) FILTER (WHERE m{f.index}) AS n{f.index}")
        if f.total:
            per_customer.append(f"SUM(total) FILTER (WHERE m{f.index}) AS t{f.index}")
    aggregates = ",\n           ".join(per_customer)
    return [
        f"item_orders AS (\n    SELECT o.customer_id, o.order_id, o.placed_at, o.total,\n"
        f"           {matches}\n    {source}\n    WHERE {filters}\n"
        "    GROUP BY o.customer_id, o.order_id, o.placed_at, o.total\n  )",
        f"item_facts AS (\n    SELECT customer_id,\n           {aggregates}\n"
        "    FROM item_orders\n    GROUP BY customer_id\n  )",
    ]
