"""Differential test of segments: hypothesis generates small shops and segment conditions;
clvflow's answer (the compiled SQL run in DuckDB) must equal an independent pandas
evaluation written from the contract (tests/pandas_segments.py).

Every example is one shop with several segments (s0, s1, ... which may refer to ``t``,
plus every leaf test of those as a segment ``l<i>`` of its own), so that the cost of
loading a shop into DuckDB is shared. Four families of conditions (customer columns,
derived attributes, orders conditions, everything mixed with references) get their own
test each. The generated segments are evaluated both ways clvflow offers: alone
(``member_ids(compile_segment(...))``, one self-contained query) and together with the
others (``SharedFacts``, one facts table for all); the leaves, together. The oracle itself
is checked against hand-worked answers on tests/data/tiny_shop. Disagreements found earlier
are pinned, with minimal shops and hand-worked answers, by the tests at the end.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import SharedFacts
from clvflow.segments.members import member_ids
from tests.conftest import AS_OF, BASE_CONFIG, TINY_SHOP
from tests.pandas_segments import Evaluator, Kind, Shop, evaluate

# ---------------------------------------------------------------- the generated shop

CUSTOMER_KINDS: dict[str, Kind] = {
    "customer_id": "text",
    "email": "text",
    "first_name": "text",
    "accepts_marketing": "bool",
    "role": "text",
    "note": "text",
    "points": "number",
    "wedding_date": "date",
    "signed_up_at": "timestamp",
    "is_vip": "bool",
}
ORDER_COLUMNS = ["order_id", "customer_id", "placed_at", "total", "currency"]
ITEM_COLUMNS = ["order_id", "product_id", "quantity", "unit_price"]
PRODUCT_COLUMNS = ["product_id", "name", "category", "price", "url"]
ORDER_KINDS: dict[str, Kind] = {"currency": "text"}
PRODUCT_KINDS: dict[str, Kind] = {"url": "text"}

ROLES = ["couple", "Couple", "COUPLE", "bridesmaid", "planner", "Groom"]
NOTE_WORDS = ["Gold", "gold", "GOLD", "silver", "Plus", "vip", "Élan", "émile", "Кот", "O'Neil"]
CURRENCIES = ["EUR", "USD", "huf"]
CATEGORIES = ["invitations", "albums", "thank-you-cards"]
PRODUCTS = [
    ("P1", "Gold Foil Invitation", 40.0),
    ("P2", "Letterpress Thank-You Cards", 25.0),
    ("P3", "Linen Album", 200.0),
    ("P4", "Botanical Save-the-Date", 30.5),
    ("P5", "Kraft Invitation", 12.25),
    ("P6", "Mini Album", 80.0),
]
RFM_SEGMENTS = [
    "champions",
    "loyal",
    "new",
    "potential_loyalists",
    "cant_lose",
    "at_risk",
    "hibernating",
    "lost",
]

# Few amounts, so that generated times often fall exactly on a window's boundary.
UNIT_NS = {
    "days": [1, 7, 30],
    "weeks": [2],
    "months": [1, 3],
    "years": [1],
}
UNIT_N = [(unit, n) for unit, ns in UNIT_NS.items() for n in ns]
SHIFTS = [relativedelta(**{unit: n}) for unit, n in UNIT_N]  # type: ignore[arg-type]
MIDNIGHT = dt.datetime.combine(AS_OF.date(), dt.time())
# Instants where the boundaries of relative times and windows fall.
ANCHORS = sorted(
    {AS_OF, MIDNIGHT}
    | {AS_OF - s for s in SHIFTS}
    | {AS_OF + s for s in SHIFTS}
    | {MIDNIGHT - s for s in SHIFTS}
    | {MIDNIGHT + s for s in SHIFTS}
)
TWO_YEARS_MIN = 2 * 366 * 24 * 60
SEGMENTS_PER_SHOP = 4
# The same YAML semantics as clvflow's SafeLoader, faster where libyaml is there.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Case:
    """One shop; segments ``s0``, ``s1``, ... (``wheres``) and ``t`` (``other``)."""

    customers: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    items: list[dict[str, Any]]
    products: list[dict[str, Any]]
    wheres: list[Any]
    other: Any = field(default_factory=lambda: {"orders_count": {"at_least": 1}})


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([fmt(row.get(c)) for c in columns])
    return out.getvalue()


def segment_yaml(description: str, where: Any) -> str:
    return yaml.safe_dump(
        {"description": description, "where": where}, sort_keys=False, allow_unicode=True
    )


def data_files(case: Case) -> dict[str, str]:
    return {
        "data/customers.csv": csv_text(case.customers, list(CUSTOMER_KINDS)),
        "data/orders.csv": csv_text(case.orders, ORDER_COLUMNS),
        "data/order_items.csv": csv_text(case.items, ITEM_COLUMNS),
        "data/products.csv": csv_text(case.products, PRODUCT_COLUMNS),
    }


def leaves_of(cond: Any) -> list[Any]:
    """The customer-level tests (attributes and orders conditions) inside a condition."""
    ((key, value),) = cond.items()
    if key in ("all", "any"):
        return [leaf for c in value for leaf in leaves_of(c)]
    if key == "not":
        return leaves_of(value)
    return [] if key == "segment" else [cond]


def segment_names(case: Case) -> list[str]:
    """Every leaf of the generated conditions is a segment ``l<i>`` of its own too, so that
    a wrong leaf cannot hide inside all/any/not; leaves come first (the smaller report)."""
    leaves = {repr(leaf) for w in case.wheres for leaf in leaves_of(w)}
    return [f"l{i}" for i in range(len(leaves))] + [f"s{i}" for i in range(len(case.wheres))]


def project_files(case: Case) -> dict[str, str]:
    files = {"clvflow.yaml": BASE_CONFIG, **data_files(case)}
    leaves = {repr(leaf): leaf for w in case.wheres for leaf in leaves_of(w)}
    for i, leaf in enumerate(leaves.values()):
        files[f"segments/l{i}.yaml"] = segment_yaml("a leaf of the generated ones", leaf)
    for i, where in enumerate(case.wheres):
        files[f"segments/s{i}.yaml"] = segment_yaml("generated", where)
    files["segments/t.yaml"] = segment_yaml("referred to", case.other)
    return files


def write_project(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "templates").mkdir(exist_ok=True)


def clvflow_members(root: Path, alone: list[str], together: list[str]) -> dict[str, list[str]]:
    """Members of the segments ``alone``, each by its own query, and of those ``together``,
    evaluated as one run does (``SharedFacts``: one facts table); keys ``name`` and
    ``name (together)``."""
    project = Project.load(root)
    data = open_shop_data(project)
    try:
        catalog = SegmentCatalog.load(project.segments_dir)
        out = {n: member_ids(data, compile_segment(catalog, n, data, AS_OF)) for n in alone}
        with SharedFacts(catalog, together, data, AS_OF) as shared:
            out.update({f"{n} (together)": shared.member_ids(n) for n in together})
        return out
    finally:
        data.close()


def oracle_members(root: Path, names: list[str]) -> dict[str, list[str]]:
    """The pandas evaluation of the files as written (re-read, as clvflow reads them)."""
    shop = Shop.from_folder(
        root / "data", CUSTOMER_KINDS, order_kinds=ORDER_KINDS, product_kinds=PRODUCT_KINDS
    )
    segments = {
        p.stem: yaml.load(p.read_text(encoding="utf-8"), Loader=YAML_LOADER)["where"]
        for p in (root / "segments").glob("*.yaml")
    }
    evaluator = Evaluator(shop, AS_OF, segments)
    return {n: evaluator.members(segments[n]) for n in names}


def check_case(case: Case) -> None:
    files = project_files(case)
    names = segment_names(case)
    with tempfile.TemporaryDirectory(prefix="clvflow-diff-") as tmp:
        root = Path(tmp)
        write_project(root, files)
        expected = oracle_members(root, names)
        # the many leaves only together (one facts table); the generated segments both ways
        actual = clvflow_members(root, [n for n in names if n[0] == "s"], names)
    wrong = [n for n in actual if actual[n] != expected[n.split(" ")[0]]]
    if wrong:
        n = wrong[0]
        segment = n.split(" ")[0]
        data = "".join(f"--- {rel}\n{text}" for rel, text in data_files(case).items())
        got, want = actual[n], expected[segment]
        raise AssertionError(
            f"clvflow and the pandas oracle disagree on {', '.join(wrong)}; the first:\n"
            f"--- segments/{segment}.yaml\n{files[f'segments/{segment}.yaml']}"
            f"--- segments/t.yaml\n{files['segments/t.yaml']}"
            f"{data}"
            f"clvflow:           {got}\n"
            f"pandas (contract): {want}\n"
            f"only clvflow:      {sorted(set(got) - set(want))}\n"
            f"only pandas:       {sorted(set(want) - set(got))}"
        )


# ---------------------------------------------------------------- strategies: data
# Strategies are built once, at import (building them per draw costs hypothesis far more
# than drawing), and a row takes few draws: several fields are decoded from one integer.

NEAR_MINUTES = [0, 0, 0, -1, 1, -60, 60]


def _instant(tier: int, code: int) -> dt.datetime:
    if tier < 5:  # exactly as_of
        return AS_OF
    if tier < 50:  # at (or a minute or an hour around) a boundary of a relative time or window
        near = code % (len(ANCHORS) * len(NEAR_MINUTES))
        minutes = NEAR_MINUTES[near % len(NEAR_MINUTES)]
        return ANCHORS[near // len(NEAR_MINUTES)] + dt.timedelta(minutes=minutes)
    # anywhere within two years of as_of
    return AS_OF + dt.timedelta(minutes=code % (2 * TWO_YEARS_MIN + 1) - TWO_YEARS_MIN)


INSTANTS = st.builds(_instant, st.integers(0, 99), st.integers(0, 2 * TWO_YEARS_MIN))
DAYS = st.builds(
    lambda tier, code: (
        ANCHORS[code % len(ANCHORS)].date() + dt.timedelta(days=code // len(ANCHORS) % 3 - 1)
        if tier < 2  # on (or a day around) a boundary of a relative time or window
        else AS_OF.date() + dt.timedelta(days=code % 1601 - 800)
    ),
    st.integers(0, 2),
    st.integers(0, 10**6),
)


def quarters(high: int) -> st.SearchStrategy[float]:
    """Amounts in quarters (exact in binary floating point, so sums are exact)."""
    return st.integers(0, high).map(lambda q: q / 4)


def _note(code: int) -> str | None:
    """0 is missing; then one, two or three words of NOTE_WORDS."""
    if code == 0:
        return None
    n, words = code - 1, len(NOTE_WORDS)
    size = 1 if n < words else 2 if n < words + words**2 else 3
    n -= sum(words**k for k in range(1, size))
    return " ".join(NOTE_WORDS[(n // words**k) % words] for k in range(size))


CUSTOMER_ROW = st.fixed_dictionaries(
    {
        "accepts_marketing": st.booleans(),
        "role": st.sampled_from([None, *ROLES]),
        "note": st.integers(0, sum(len(NOTE_WORDS) ** k for k in (1, 2, 3))).map(_note),
        "points": st.sampled_from([None, 0, 50, 120, 500, -1, 7, 1000, 999, 3]),
        "wedding_date": st.one_of(st.none(), DAYS),
        "signed_up_at": st.one_of(st.none(), INSTANTS),
        "is_vip": st.sampled_from([None, True, False]),
    }
)
PRICE_QUARTERS = 801
ITEM_CODES = st.integers(0, (len(PRODUCTS) + 1) * 3 * PRICE_QUARTERS - 1)


def _item(order_id: str, code: int) -> dict[str, Any]:
    product, rest = code % (len(PRODUCTS) + 1), code // (len(PRODUCTS) + 1)
    return {
        "order_id": order_id,
        # P7 is not in products (a deleted product): its product columns are missing
        "product_id": f"P{product + 1}",
        "quantity": rest % 3 + 1,
        "unit_price": (rest // 3) / 4,
    }


TOTAL_QUARTERS = 2001
ORDER_ROW = st.tuples(
    # customer (modulo the number of customers), currency and total in quarters
    st.integers(0, 40 * len(CURRENCIES) * TOTAL_QUARTERS - 1),
    INSTANTS,
    st.lists(ITEM_CODES, max_size=3),
)
MAX_CUSTOMERS, MAX_ORDERS = 40, 120
# Rows come in batches (lists of lists): st.lists alone mostly makes tiny shops, and sizes
# drawn up front would keep hypothesis from deleting rows when it shrinks a failure.
CUSTOMER_BATCHES = st.lists(
    st.lists(CUSTOMER_ROW, min_size=1, max_size=8), min_size=1, max_size=5
).map(lambda batches: [row for batch in batches for row in batch][:MAX_CUSTOMERS])
ORDER_BATCHES = st.lists(  # none at all too (an orders file with no rows)
    st.lists(ORDER_ROW, min_size=1, max_size=12), min_size=0, max_size=10
).map(lambda batches: [row for batch in batches for row in batch][:MAX_ORDERS])
P6_CATEGORY = st.sampled_from([*CATEGORIES, None])
# An extra customer column with no value at all has no type the CSV reader could tell
# (the contract types orders, items and products, not extra columns): keep one value.
COLUMN_DEFAULTS: dict[str, Any] = {
    "role": "couple",
    "note": "Gold plus",
    "points": 50,
    "wedding_date": AS_OF.date(),
    "signed_up_at": AS_OF,
    "is_vip": True,
}


@st.composite
def shop_rows(draw: st.DrawFn) -> tuple[list[dict[str, Any]], ...]:
    rows = draw(CUSTOMER_BATCHES)
    customers = [
        {"customer_id": f"C{i:02d}", "email": f"c{i}@example.com", "first_name": f"Name{i}", **row}
        for i, row in enumerate(rows, start=1)
    ]
    for column, value in COLUMN_DEFAULTS.items():
        if all(c[column] is None for c in customers):
            customers[0][column] = value
    orders: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    drawn = draw(ORDER_BATCHES)
    for k, (code, placed_at, lines) in enumerate(drawn, start=1):
        oid = f"O{k:03d}"
        total, rest = code % TOTAL_QUARTERS, code // TOTAL_QUARTERS
        currency, who = CURRENCIES[rest % len(CURRENCIES)], rest // len(CURRENCIES)
        # one order in 40 is of an id missing from customers (an erased customer)
        cid = "C99" if who == 39 else customers[who % len(customers)]["customer_id"]
        orders.append(
            {
                "order_id": oid,
                "customer_id": cid,
                "placed_at": placed_at,
                "total": total / 4,
                "currency": currency,
            }
        )
        items.extend(_item(oid, line) for line in lines)
    p6 = draw(P6_CATEGORY)
    products = [
        {
            "product_id": pid,
            "name": name,
            "category": p6 if pid == "P6" else CATEGORIES[i % 3],
            "price": price,
            "url": f"https://shop.example/p/{pid.lower()}",
        }
        for i, (pid, name, price) in enumerate(PRODUCTS)
    ]
    return customers, orders, items, products


# ---------------------------------------------------------------- strategies: conditions
# Conditions are drawn with placeholders (Pick, Fragment, TimePick) for constants that
# depend on the shop; ``fill`` replaces them with values from the shop's pools, so the
# strategies stay static while the constants still hit values present in the data.


@dataclass(frozen=True)
class Pick:
    pool: str
    index: int


@dataclass(frozen=True)
class Fragment:
    pool: str
    index: int
    a: int
    b: int
    case: str
    where: str  # "start", "end" or "any"


@dataclass(frozen=True)
class TimePick:
    index: int
    form: str  # "date", "datetime", "iso_date" or "iso_timestamp"


@dataclass
class Pools:
    """Constants worth testing against: fixed ones (boundaries, vocabularies) and values
    present in the data, kept apart so that shrinking the data leaves picks of fixed ones
    alone."""

    fixed: dict[str, list[Any]]
    data: dict[str, list[Any]]

    def pick(self, pool: str, index: int) -> Any:
        """Even indexes pick fixed values, odd ones the data's values (the n-th from the
        start, so that deleting later rows keeps the pick)."""
        fixed, data = self.fixed[pool], self.data.get(pool, [])
        n = index // 2
        if index % 2 and n < len(data):
            return data[n]
        return fixed[n % len(fixed)]


FIXED_POOLS: dict[str, list[Any]] = {
    # text
    "role": [*ROLES, "couples"],
    "note": NOTE_WORDS,
    "rfm_segment": RFM_SEGMENTS,
    "currency": [*CURRENCIES, "eur"],
    "category": [*CATEGORIES, "Invitations"],
    "name": [p[1] for p in PRODUCTS],
    # numbers
    "points": [0, 50, -1, 1000],
    "orders_count": [0, 1, 2, 3, 4, 5],
    "total_spent": [0, 100.0, 250.5],
    "historical_clv": [0, 100.0],
    "avg_order_value": [0, 100.0],
    "days_since_first_order": [0, 1, 7, 30, 365],
    "days_since_last_order": [0, 1, 7, 30, 365],
    "rfm_recency": [1, 2, 3, 4, 5],
    "rfm_frequency": [1, 2, 3, 4, 5],
    "rfm_monetary": [1, 2, 3, 4, 5],
    "total": [0, 100.0, 250.25],
    "quantity": [1, 2, 3],
    "unit_price": [0, 10.0, 100.25, 150.0],
    "price": [p[2] for p in PRODUCTS],
    "count": [0, 1, 2, 3],
    "sum": [0, 100.0],
    "times": ANCHORS,
}


def pools_for(customers: list[dict[str, Any]], orders: list[dict[str, Any]]) -> Pools:
    placed = [o for o in orders if o["placed_at"] <= AS_OF]
    by_customer: dict[str, list[dict[str, Any]]] = {c["customer_id"]: [] for c in customers}
    for o in placed:
        by_customer.get(o["customer_id"], []).append(o)
    sums = [sum(o["total"] for o in os) for os in by_customer.values() if os]
    avgs = [sum(o["total"] for o in os) / len(os) for os in by_customer.values() if os]
    since = [(AS_OF.date() - o["placed_at"].date()).days for o in placed]
    totals = [o["total"] for o in orders]
    return Pools(
        fixed=FIXED_POOLS,
        data={
            "note": [c["note"] for c in customers if c["note"]],
            "points": [c["points"] for c in customers if c["points"] is not None],
            "total_spent": sums,
            "historical_clv": sums,
            "avg_order_value": [*avgs, *totals],
            "days_since_first_order": since,
            "days_since_last_order": since,
            "total": totals,
            "sum": [*sums, *totals],
            "times": [
                *(o["placed_at"] for o in orders),
                *(c["signed_up_at"] for c in customers if c["signed_up_at"]),
                *(
                    dt.datetime.combine(c["wedding_date"], dt.time())
                    for c in customers
                    if c["wedding_date"]
                ),
            ],
        },
    )


def fill(node: Any, pools: Pools) -> Any:
    """Replace the placeholders in a drawn condition by constants from the shop."""
    if isinstance(node, dict):
        return {k: fill(v, pools) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, pools) for v in node]
    if isinstance(node, Pick):
        return pools.pick(node.pool, node.index)
    if isinstance(node, Fragment):
        word = pools.pick(node.pool, node.index)
        a, b = node.a % len(word), node.b % len(word)
        i, j = {"start": (0, a + 1), "end": (a, len(word))}.get(
            node.where, (min(a, b), max(a, b) + 1)
        )
        piece = word[i:j]
        return {
            "same": piece,
            "upper": piece.upper(),
            "lower": piece.lower(),
            "swap": piece.swapcase(),
        }[node.case]
    if isinstance(node, TimePick):
        t = pools.pick("times", node.index)
        return {
            "date": t.date(),
            "datetime": t,
            "iso_date": t.date().isoformat(),
            "iso_timestamp": t.isoformat(),
        }[node.form]
    return node


INDEX = st.integers(0, 200)


def choice(options: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``options``, about evenly (sampled_from favours the first ones a lot here)."""
    return st.integers(0, 2**20 - 1).map(lambda i: options[i % len(options)])


RELATIVE_TIMES = st.one_of(
    st.sampled_from(["today", "now"]),
    st.sampled_from(UNIT_N).map(lambda un: f"{un[1]} {un[0]} ago"),
    st.sampled_from(UNIT_N).map(lambda un: f"in {un[1]} {un[0]}"),
)
WINDOWS = st.builds(
    lambda d, un: f"{d} {un[1]} {un[0]}",
    st.sampled_from(["last", "last", "next"]),
    st.sampled_from(UNIT_N),
)
TIME_VALUES = st.one_of(
    RELATIVE_TIMES,
    st.builds(TimePick, INDEX, st.sampled_from(["date", "datetime", "iso_date", "iso_timestamp"])),
)
PERCENTS = [1, 5, 10, 20, 25, 33, 50, 70, 99, 100, 12.5, 2.5]
PERCENT_OPS = ("top_percent", "bottom_percent")
TEXT_OPS = ("contains", "starts_with", "ends_with")


def ops_for(kind: Kind, percent: bool) -> list[str]:
    """The operators that fit ``kind``; the kind's own ones listed more than once, so that
    they are drawn about as often as the ones every kind has."""
    common = ["equals", "not_equals", "in", "not_in", "is_set"]
    order = ["at_least", "at_most", "greater_than", "less_than", "between", "between"]
    if kind == "number":
        return common + order + (2 * list(PERCENT_OPS) if percent else [])
    if kind in ("date", "timestamp"):
        return [*common, *order, *(3 * ["before", "after", "within", "within"])]
    if kind == "text":
        return [*common, *(2 * TEXT_OPS)]
    return ["equals", "not_equals", "is_set"]


def attribute_test(kind: Kind, pool: str, percent: bool = True) -> st.SearchStrategy[Any]:
    """A test for a value of ``kind``: a bare scalar, or a mapping of 1–2 operators."""
    if kind == "number":
        value = st.one_of(
            st.builds(Pick, st.just(pool), INDEX), st.integers(-5, 600), quarters(2400)
        )
    elif kind in ("date", "timestamp"):
        value = TIME_VALUES
    elif kind == "text":
        value = st.builds(Pick, st.just(pool), INDEX)
    else:
        value = st.booleans()
    values = st.lists(value, min_size=0, max_size=3)
    ops = st.tuples(choice(ops_for(kind, percent)), st.booleans(), choice(ops_for(kind, percent)))
    ops = ops.map(lambda t: list(dict.fromkeys([t[0], t[2]] if t[1] else [t[0]])))
    fragments = {
        op: st.builds(
            Fragment,
            st.just(pool),
            INDEX,
            INDEX,
            INDEX,
            st.sampled_from(["same", "upper", "lower", "swap"]),
            st.just(where),
        )
        for op, where in zip(TEXT_OPS, ("any", "start", "end"), strict=True)
    }
    bare = choice([True, *[False] * 7])

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        if draw(bare):
            return draw(value)  # a bare scalar means equals
        test: dict[str, Any] = {}
        for op in draw(ops):
            if op in ("in", "not_in"):
                test[op] = draw(values)
            elif op == "between":
                test[op] = [draw(value), draw(value)]
            elif op == "is_set":
                test[op] = draw(st.booleans())
            elif op in TEXT_OPS:
                test[op] = draw(fragments[op])
            elif op == "within":
                test[op] = draw(WINDOWS)
            elif op in PERCENT_OPS:
                test[op] = draw(st.sampled_from(PERCENTS))
            else:
                test[op] = draw(value)
        return test

    return build()


CUSTOMER_ATTRIBUTES: dict[str, Kind] = {
    k: v for k, v in CUSTOMER_KINDS.items() if k not in ("customer_id", "email", "first_name")
}
DERIVED: dict[str, Kind] = {
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
ORDER_WHERE: dict[str, Kind] = {
    "total": "number",
    "currency": "text",
    "placed_at": "timestamp",
    "quantity": "number",
    "unit_price": "number",
    "category": "text",
    "name": "text",
    "price": "number",
}


def attribute_conditions(scope: dict[str, Kind], percent: bool) -> st.SearchStrategy[Any]:
    """``{name: test}`` for a name of ``scope`` (each name equally likely)."""
    tests = {name: attribute_test(kind, name, percent) for name, kind in scope.items()}
    names = choice(sorted(scope))

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        name = draw(names)
        return {name: draw(tests[name])}

    return build()


NODES = choice(["leaf", "leaf", "leaf", "all", "any", "not"])


def combine(leaf: st.SearchStrategy[Any], depth: int) -> st.SearchStrategy[Any]:
    """A tree of all/any/not over ``leaf`` conditions, at most ``depth`` levels deep."""
    if depth == 0:
        return leaf
    sub = combine(leaf, depth - 1)
    items = st.lists(sub, min_size=1, max_size=3)

    @st.composite
    def tree(draw: st.DrawFn) -> Any:
        node = draw(NODES)
        if node == "leaf":
            return draw(leaf)
        if node == "not":
            return {"not": draw(sub)}
        return {node: draw(items)}

    return tree()


ORDER_WHERE_CONDITIONS = combine(attribute_conditions(ORDER_WHERE, percent=False), 2)
COUNT_TESTS = attribute_test("number", "count", percent=False)
TOTAL_TESTS = attribute_test("number", "sum", percent=False)


@st.composite
def orders_conditions(draw: st.DrawFn) -> Any:
    spec: dict[str, Any] = {}
    if draw(st.integers(0, 3)) > 0:
        spec["where"] = draw(ORDER_WHERE_CONDITIONS)
    if draw(st.booleans()):
        spec["within"] = draw(WINDOWS)
    if draw(st.integers(0, 2)) == 0:
        spec["count"] = draw(COUNT_TESTS)
    if draw(st.integers(0, 2)) == 0:
        spec["total"] = draw(TOTAL_TESTS)
    return {"orders": spec}


LEAF_WEIGHTS = {
    "customer": 4,
    "derived": 4,
    "orders": 4,
    "segment": 1,
}


def leaves(refer: bool) -> st.SearchStrategy[Any]:
    strategies = {
        "customer": attribute_conditions(CUSTOMER_ATTRIBUTES, percent=True),
        "derived": attribute_conditions(DERIVED, percent=True),
        "orders": orders_conditions(),
        "segment": st.just({"segment": "t"}),
    }
    kinds = [k for k, w in LEAF_WEIGHTS.items() for _ in range(w) if refer or k != "segment"]
    kind = choice(kinds)

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        return draw(strategies[draw(kind)])

    return build()


OTHER_CONDITIONS = combine(leaves(refer=False), 2)
# Families of conditions, each tested on its own so that each gets its share of examples.
FAMILIES: dict[str, st.SearchStrategy[Any]] = {
    "customer": combine(attribute_conditions(CUSTOMER_ATTRIBUTES, percent=True), 2),
    "derived": combine(attribute_conditions(DERIVED, percent=True), 2),
    "orders": combine(orders_conditions(), 2),
    "mixed": combine(leaves(refer=True), 3),
}


def cases(family: str) -> st.SearchStrategy[Case]:
    # unique: hypothesis likes to repeat a drawn condition, which would waste a segment
    conditions = st.lists(
        FAMILIES[family], min_size=SEGMENTS_PER_SHOP, max_size=SEGMENTS_PER_SHOP, unique_by=repr
    )

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        customers, orders, items, products = draw(shop_rows())
        pools = pools_for(customers, orders)
        other = fill(draw(OTHER_CONDITIONS), pools)
        wheres = [fill(w, pools) for w in draw(conditions)]
        return Case(customers, orders, items, products, wheres, other)

    return build()


# ---------------------------------------------------------------- explicit examples


def _customer(cid: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": cid,
        "email": f"{cid.lower()}@example.com",
        "first_name": cid,
        "accepts_marketing": True,
        "role": None,
        "note": None,
        "points": None,
        "wedding_date": None,
        "signed_up_at": None,
        "is_vip": None,
    }
    row.update(values)
    return row


def _order(oid: str, cid: str, placed_at: dt.datetime, total: float) -> dict[str, Any]:
    return {
        "order_id": oid,
        "customer_id": cid,
        "placed_at": placed_at,
        "total": total,
        "currency": "EUR",
    }


def _products() -> list[dict[str, Any]]:
    return [
        {
            "product_id": pid,
            "name": name,
            "category": CATEGORIES[i % 3],
            "price": price,
            "url": f"https://shop.example/p/{pid.lower()}",
        }
        for i, (pid, name, price) in enumerate(PRODUCTS)
    ]


EXAMPLE_CUSTOMERS = [
    _customer(
        "C01",
        role="couple",
        note="Gold plus",
        points=500,
        is_vip=True,
        wedding_date=dt.date(2026, 12, 10),
        signed_up_at=dt.datetime(2025, 1, 1, 9, 30),
    ),
    _customer(
        "C02",
        role="Couple",
        note="silver",
        points=500,
        is_vip=False,
        wedding_date=dt.date(2026, 11, 23),
    ),
    _customer("C03", points=120, wedding_date=dt.date(2026, 10, 24)),  # 30 days ago
    _customer("C04", role="planner", note="élan GOLD"),
]
EXAMPLE_ORDERS = [
    _order("O001", "C01", AS_OF - dt.timedelta(days=30), 100.25),  # exactly 30 days ago
    _order("O002", "C01", AS_OF, 50.0),  # exactly at as_of
    _order("O003", "C02", AS_OF - relativedelta(months=3), 20.5),
    _order("O004", "C03", AS_OF + dt.timedelta(minutes=1), 999.0),  # after as_of
    _order("O005", "C02", MIDNIGHT, 79.75),
]
EXAMPLE_ITEMS = [
    {"order_id": "O001", "product_id": "P1", "quantity": 2, "unit_price": 40.0},
    {"order_id": "O001", "product_id": "P2", "quantity": 1, "unit_price": 20.25},
    {"order_id": "O003", "product_id": "P3", "quantity": 1, "unit_price": 20.5},
    {"order_id": "O005", "product_id": "P1", "quantity": 1, "unit_price": 79.75},
]
EXAMPLE_CUSTOMERS = [
    _customer(
        "C01",
        role="couple",
        note="Gold plus",
        points=500,
        is_vip=True,
        wedding_date=dt.date(2026, 12, 10),
        signed_up_at=dt.datetime(2025, 1, 1, 9, 30),
    ),
    _customer(
        "C02",
        role="Couple",
        note="silver",
        points=500,
        is_vip=False,
        wedding_date=dt.date(2026, 11, 23),
    ),
    _customer("C03", points=120, wedding_date=dt.date(2026, 10, 24)),  # 30 days ago
    _customer("C04", role="planner", note="élan GOLD"),
]
EXAMPLE_ORDERS = [
    _order("O001", "C01", AS_OF - dt.timedelta(days=30), 100.25),  # exactly 30 days ago
    _order("O002", "C01", AS_OF, 50.0),  # exactly at as_of
    _order("O003", "C02", AS_OF - relativedelta(months=3), 20.5),  # exactly 3 months ago
    _order("O004", "C03", AS_OF + dt.timedelta(minutes=1), 999.0),  # after as_of
    _order("O005", "C02", MIDNIGHT, 79.75),  # today's midnight
]
EXAMPLE_ITEMS = [
    {"order_id": "O001", "product_id": "P1", "quantity": 2, "unit_price": 40.0},
    {"order_id": "O001", "product_id": "P2", "quantity": 1, "unit_price": 20.25},
    {"order_id": "O003", "product_id": "P3", "quantity": 1, "unit_price": 20.5},
    {"order_id": "O005", "product_id": "P1", "quantity": 1, "unit_price": 79.75},
]
EXAMPLE_BOUNDARIES = Case(
    EXAMPLE_CUSTOMERS,
    EXAMPLE_ORDERS,
    EXAMPLE_ITEMS,
    _products(),
    wheres=[
        {"role": {"not_in": ["couple"]}},
        {"orders": {"within": "last 30 days", "count": {"at_least": 2}}},
        {"wedding_date": {"between": ["today", "in 17 days"]}},
        {"last_order_at": {"after": "today", "before": "now"}},
        {"wedding_date": {"within": "last 30 days"}},
    ],
)
EXAMPLE_ITEMS_PERCENT_REFERENCES = Case(
    EXAMPLE_CUSTOMERS,
    EXAMPLE_ORDERS,
    EXAMPLE_ITEMS,
    _products(),
    wheres=[
        {"not": {"points": {"top_percent": 50}}},
        {"orders": {"where": {"all": [{"category": "invitations"}, {"quantity": 2}]}}},
        {"any": [{"note": {"contains": "GOLD"}}, {"orders": {"total": {"at_most": 0}}}]},
        {"all": [{"segment": "t"}, {"rfm_recency": {"at_least": 3}}]},
    ],
    other={"not": {"last_order_at": {"within": "last 3 months"}}},
)


def _orders_days_ago(cid: str, days_totals: list[tuple[int, float]]) -> list[dict[str, Any]]:
    return [
        _order(f"O{cid[1:]}{k}", cid, AS_OF - dt.timedelta(days=d), total)
        for k, (d, total) in enumerate(days_totals)
    ]


# Five buyers with 1..5 orders (frequency scores 1..5); C02 has the latest order (R=5, F=2:
# a potential loyalist, not new); C03's order values 10, 10, 100 have a mean unlike the median.
EXAMPLE_RFM = Case(
    [_customer(f"C0{i}") for i in range(1, 7)],
    [
        *_orders_days_ago("C01", [(100, 50.0)]),
        *_orders_days_ago("C02", [(20, 10.0), (1, 20.0)]),
        *_orders_days_ago("C03", [(200, 10.0), (150, 10.0), (50, 100.0)]),
        *_orders_days_ago("C04", [(300, 25.0), (250, 25.0), (200, 25.0), (30, 25.0)]),
        *_orders_days_ago("C05", [(400, 5.0), (300, 5.0), (200, 5.0), (100, 5.0), (2, 5.0)]),
    ],
    EXAMPLE_ITEMS,
    _products(),
    wheres=[
        {"rfm_segment": "new"},
        {"rfm_segment": {"in": ["potential_loyalists", "champions"]}},
        {"avg_order_value": {"at_least": 30}},
        {"all": [{"rfm_recency": {"at_least": 4}}, {"rfm_frequency": {"at_most": 2}}]},
    ],
)

# ---------------------------------------------------------------- the tests


# Each example loads one shop (about 0.1 s in clvflow) and checks SEGMENTS_PER_SHOP segments.
# CLVFLOW_DIFFERENTIAL_EXAMPLES=500 searches harder (e.g. after a change to the compiler).
DIFFERENTIAL = settings(
    max_examples=int(os.environ.get("CLVFLOW_DIFFERENTIAL_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.slow
@DIFFERENTIAL
@given(case=cases("customer"))
@example(case=EXAMPLE_BOUNDARIES)
def test_customer_attributes(case: Case) -> None:
    check_case(case)


@pytest.mark.slow
@DIFFERENTIAL
@given(case=cases("derived"))
@example(case=EXAMPLE_RFM)
def test_derived_attributes(case: Case) -> None:
    check_case(case)


@pytest.mark.slow
@DIFFERENTIAL
@given(case=cases("orders"))
def test_orders_conditions(case: Case) -> None:
    check_case(case)


@pytest.mark.slow
@DIFFERENTIAL
@given(case=cases("mixed"))
@example(case=EXAMPLE_ITEMS_PERCENT_REFERENCES)
def test_mixed_conditions_and_references(case: Case) -> None:
    check_case(case)


TINY_KINDS: dict[str, Kind] = {
    "customer_id": "text",
    "email": "text",
    "first_name": "text",
    "locale": "text",
    "role": "text",
    "wedding_date": "date",
    "loyalty_points": "number",
    "vip_note": "text",
    "accepts_marketing": "bool",
}
# Hand-checked in tests/test_segments_tiny_shop.py (as of 2026-11-23 12:00).
TINY_CASES: list[tuple[str, list[str]]] = [
    ("locale: {not_in: [en]}", ["C2", "C3", "C4"]),
    ("not: {last_order_at: {before: 90 days ago}}", ["C1", "C3", "C5", "C6"]),
    ("total_spent: {top_percent: 50}", ["C1", "C2", "C3", "C4"]),
    ("loyalty_points: {top_percent: 50}", ["C1", "C4", "C5"]),
    ("wedding_date: {between: [in 3 weeks, in 6 months]}", ["C1"]),
    ("orders: {within: last 90 days, count: {equals: 0}}", ["C2", "C4", "C5", "C6"]),
    ("orders: {where: {all: [{category: invitations}, {quantity: {at_least: 2}}]}}", ["C4"]),
    ("rfm_segment: {is_set: true}", ["C1", "C2", "C3", "C4"]),
    ("vip_note: {starts_with: GOLD}", ["C1", "C5"]),
]


@pytest.mark.parametrize(("condition", "expected"), TINY_CASES, ids=[c[0] for c in TINY_CASES])
def test_oracle_on_tiny_shop(condition: str, expected: list[str]) -> None:
    """The pandas oracle reproduces the hand-worked answers (so it can be trusted)."""
    shop = Shop.from_folder(TINY_SHOP, TINY_KINDS)
    assert evaluate(shop, yaml.safe_load(condition), AS_OF) == expected


# ---------------------------------------------------------------- disagreements found
# Minimal shops where clvflow once contradicted the contract, one per bug, each with the
# rule it broke. The expected members are worked out by hand (and checked against the
# oracle); clvflow must give them alone and together.

MINIMAL_CUSTOMERS = (
    "customer_id,email,first_name,role\nC1,a@example.com,Ann,couple\nC2,b@example.com,Bob,\n"
)
MINIMAL_ORDERS = "order_id,customer_id,placed_at,total\nO1,C1,2026-11-20 10:00:00,40.00\n"
MINIMAL_KINDS: dict[str, Kind] = {
    "customer_id": "text",
    "email": "text",
    "first_name": "text",
    "role": "text",
}
REPORTED: dict[str, tuple[dict[str, str], str, list[str], str]] = {
    # name: (data files, condition, expected members, the rule)
    "historical_clv_missing_without_orders": (
        {"customers.csv": MINIMAL_CUSTOMERS, "orders.csv": MINIMAL_ORDERS},
        "historical_clv: {is_set: false}",
        ["C2"],
        "historical_clv (avg order value × frequency × lifespan) is missing without orders, "
        "like every derived value but orders_count and total_spent (it was stored as 0)",
    ),
    "historical_clv_percent_over_customers_with_a_value": (
        {"customers.csv": MINIMAL_CUSTOMERS, "orders.csv": MINIMAL_ORDERS},
        "historical_clv: {bottom_percent: 50}",
        ["C1"],
        "bottom_percent is over customers with a value; C2 has none (no orders)",
    ),
    "not_in_empty_list": (
        {"customers.csv": MINIMAL_CUSTOMERS, "orders.csv": MINIMAL_ORDERS},
        "role: {not_in: []}",
        ["C1"],
        "every value is not in the empty list (NOT IN (NULL) was never true); a missing one "
        "still fails the test",
    ),
    "in_empty_list": (
        {"customers.csv": MINIMAL_CUSTOMERS, "orders.csv": MINIMAL_ORDERS},
        "not: {role: {in: []}}",
        ["C1", "C2"],
        "no value is in the empty list, so its complement is everyone",
    ),
    "rfm_among_customers_only": (
        {
            "customers.csv": MINIMAL_CUSTOMERS,
            "orders.csv": (
                "order_id,customer_id,placed_at,total\n"
                "O1,C1,2026-11-20 10:00:00,40.00\n"
                "O2,C2,2026-11-20 10:00:00,40.00\n"
                "O3,C2,2026-11-21 10:00:00,40.00\n"
                "O4,C9,2026-11-10 10:00:00,40.00\n"
                "O5,C9,2026-11-11 10:00:00,40.00\n"
                "O6,C9,2026-11-12 10:00:00,40.00\n"
            ),
        },
        "rfm_frequency: 5",
        ["C2"],
        "RFM scores rank among customers with at least one order; C9 is no customer (e.g. "
        "erased, its orders kept) and must not be ranked, so C2 (2 orders, the most of the "
        "two customers) has frequency 5 (it got 3)",
    ),
    "shop_without_orders": (
        {
            "customers.csv": MINIMAL_CUSTOMERS,
            "orders.csv": "order_id,customer_id,placed_at,total\n",
        },
        "orders_count: 0",
        ["C1", "C2"],
        "an orders file with no rows yet keeps the contract's types (the CSV sniffer types "
        "it all-VARCHAR, and every segment failed with a raw DuckDB BinderException)",
    ),
    "shop_without_order_items": (
        {
            "customers.csv": MINIMAL_CUSTOMERS,
            "orders.csv": MINIMAL_ORDERS,
            "order_items.csv": "order_id,product_id,quantity,unit_price\n",
            "products.csv": "product_id,name,category,price\nP1,Card,cards,2.50\n",
        },
        "orders: {where: {quantity: {at_least: 2}}}",
        [],
        "an order_items file with no rows keeps quantity a number (it was rejected: "
        "\"'at_least' does not apply to 'quantity', which is text\")",
    ),
}


def _reported_project(root: Path, data: dict[str, str], condition: str) -> None:
    files = {f"data/{name}": text for name, text in data.items()}
    files["clvflow.yaml"] = BASE_CONFIG
    files["segments/s.yaml"] = f"description: reported\nwhere:\n  {condition}\n"
    write_project(root, files)


@pytest.mark.parametrize("name", list(REPORTED))
def test_oracle_on_reported_cases(name: str) -> None:
    """The oracle gives the hand-worked answer of every reported case."""
    data, condition, expected, _ = REPORTED[name]
    with tempfile.TemporaryDirectory(prefix="clvflow-diff-") as tmp:
        root = Path(tmp)
        _reported_project(root, data, condition)
        shop = Shop.from_folder(root / "data", MINIMAL_KINDS)
    assert evaluate(shop, yaml.safe_load(condition), AS_OF) == expected


@pytest.mark.parametrize("name", list(REPORTED))
def test_reported_disagreements(name: str) -> None:
    data, condition, expected, rule = REPORTED[name]
    with tempfile.TemporaryDirectory(prefix="clvflow-diff-") as tmp:
        root = Path(tmp)
        _reported_project(root, data, condition)
        members = clvflow_members(root, ["s"], ["s"])
    assert members == {"s": expected, "s (together)": expected}, rule


@pytest.mark.parametrize(
    "when",
    ["'2026-11-20T10:00:00+00:00'", "'2026-11-20T10:00:00Z'", "2026-11-20 10:00:00+00:00"],
    ids=["quoted", "zulu", "yaml-timestamp"],
)
def test_iso_timestamp_with_offset_is_converted_to_shop_time(when: str) -> None:
    """Outside the oracle (it has no time zones): worked out by hand. An ISO timestamp with
    an offset names an instant (the offset used to be dropped): 10:00 UTC is 11:00 in
    Budapest (UTC+1 in November), so both sign-ups (10:30 and 09:30 local) are before it,
    and only the later one is after 10:00 local."""
    customers = (
        "customer_id,email,first_name,signed_up_at\n"
        "C1,a@example.com,Ann,2026-11-20 10:30:00\n"
        "C2,b@example.com,Bob,2026-11-20 09:30:00\n"
    )
    data = {"customers.csv": customers, "orders.csv": MINIMAL_ORDERS}
    with tempfile.TemporaryDirectory(prefix="clvflow-diff-") as tmp:
        root = Path(tmp)
        _reported_project(root, data, f"signed_up_at: {{before: {when}}}")
        assert clvflow_members(root, ["s"], [])["s"] == ["C1", "C2"]
        _reported_project(root, data, "signed_up_at: {after: '2026-11-20T10:00:00'}")
        assert clvflow_members(root, ["s"], [])["s"] == ["C1"]
