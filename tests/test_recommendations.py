"""Recommendations on a hand-made shop: co-purchases, minus what the customer owns, then
best sellers; the same on files (DuckDB) and pushed down to PostgreSQL. Also the latest
order per customer, looked up once per run on files, equal to the per-batch query."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from clvflow.data.sources import open_shop_data
from clvflow.personalization.orders import OrderLookup, latest_orders
from clvflow.personalization.recommendations import Recommender
from clvflow.project.layout import Project
from tests.conftest import BASE_CONFIG, POSTGRES_URL, ProjectFactory, postgres_tables

AS_OF = dt.datetime(2026, 11, 23, 12, 0)

CUSTOMERS = """customer_id,email,first_name
X1,x1@example.com,Ann
X2,x2@example.com,Bob
X3,x3@example.com,Cy
X4,x4@example.com,Di
X5,x5@example.com,Ed
X6,x6@example.com,Flo
X7,x7@example.com,Gus
"""
ORDERS = """order_id,customer_id,placed_at,total,currency
A1,X1,2026-01-01 10:00:00,70.00,EUR
A2,X2,2026-02-01 10:00:00,70.00,EUR
A3,X3,2026-03-01 10:00:00,70.00,EUR
A4,X4,2026-04-01 10:00:00,40.00,EUR
A5,X5,2026-05-01 10:00:00,230.00,EUR
A6,X4,2026-12-01 10:00:00,15.00,EUR
A7,X7,2026-06-01 10:00:00,300.00,EUR
"""
ITEMS = """order_id,product_id,quantity,unit_price
A1,P1,1,40.00
A1,P2,1,30.00
A2,P1,1,40.00
A2,P3,1,30.00
A3,P1,1,40.00
A3,P2,1,30.00
A4,P1,1,40.00
A5,P2,1,30.00
A5,P4,1,200.00
A6,P5,1,15.00
A7,P1,1,40.00
A7,P2,1,30.00
A7,P3,1,30.00
A7,P4,1,200.00
"""
PRODUCTS = """product_id,name,category,price,url
P1,Invitation Suite,invitations,40.00,https://shop.example/p1
P2,Thank-You Cards,thank-you-cards,30.00,https://shop.example/p2
P3,Save-the-Date,save-the-dates,30.00,https://shop.example/p3
P4,Wedding Album,albums,200.00,https://shop.example/p4
P5,Gift Wrap,gift-wrap,15.00,https://shop.example/p5
"""
FILES = {
    "data/customers.csv": CUSTOMERS,
    "data/orders.csv": ORDERS,
    "data/order_items.csv": ITEMS,
    "data/products.csv": PRODUCTS,
}

# Worked out by hand. Co-purchase counts (orders ≤ AS_OF; A6 is later), A7 holding all of
# P1-P4 adds 1 to every pair among them:
#   P1→P2 3, P1→P3 2, P1→P4 1, P2→P1 3, P2→P3 1, P2→P4 2, P3→P1 2, P3→P2 1, P3→P4 1,
#   P4→P1 1, P4→P2 2, P4→P3 1.
# Best sellers (orders holding the product): P1 5, P2 4, P3 2, P4 2 (ties by id); P5 none.
EXPECTED = {
    "X1": ["P3", "P4"],  # owns P1, P2: P3 (2 + 1) then P4 (1 + 2); nothing else to add
    "X2": ["P2", "P4"],  # owns P1, P3: P2 (3 + 1), P4 (1 + 1); no best seller left
    "X4": ["P2", "P3", "P4"],  # owns P1 (P5 is after AS_OF): P2 3, P3 2, P4 1
    "X5": ["P1", "P3"],  # owns P2, P4: P1 (3 + 1), P3 (1 + 1)
    "X6": ["P1", "P2", "P3"],  # no orders: the best sellers
    "X7": [],  # owns every product sold before AS_OF: nothing left to recommend
}


def _recommendations(root: Path) -> tuple[dict[str, list[str]], str]:
    data = open_shop_data(Project.load(root))
    try:
        recos = Recommender(data, AS_OF).for_customers(sorted(EXPECTED))
        return {c: [p["product_id"] for p in ps] for c, ps in recos.items()}, data.dialect
    finally:
        data.close()


def test_co_purchases_minus_owned_then_best_sellers_on_files(
    make_project: ProjectFactory,
) -> None:
    got, dialect = _recommendations(make_project(FILES))
    assert dialect == "duckdb"
    assert got == EXPECTED


def test_recommended_products_carry_what_templates_show(make_project: ProjectFactory) -> None:
    data = open_shop_data(Project.load(make_project(FILES)))
    try:
        (first, *_) = Recommender(data, AS_OF).for_customers(["X5"])["X5"]
    finally:
        data.close()
    assert first == {
        "product_id": "P1",
        "name": "Invitation Suite",
        "category": "invitations",
        "price": 40.0,
        "url": "https://shop.example/p1",
    }


def test_latest_order_once_per_run_equals_the_per_batch_query(
    make_project: ProjectFactory,
) -> None:
    data = open_shop_data(Project.load(make_project(FILES)))
    try:
        ids = ["X1", "X4", "X5", "X6"]
        once = OrderLookup(data, AS_OF).for_customers(ids)
        per_batch = latest_orders(data, ids, AS_OF)
    finally:
        data.close()
    assert once == per_batch
    assert sorted(once) == ["X1", "X4", "X5"]  # X6 has no order
    assert once["X4"].order_id == "A4"  # A6 is after AS_OF
    assert [i["product_id"] for i in once["X5"].items] == ["P2", "P4"]


DDL = {
    "customers": "customer_id TEXT PRIMARY KEY, email TEXT, first_name TEXT",
    "orders": "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TIMESTAMP, "
    "total NUMERIC(12,2), currency TEXT",
    "order_items": "order_id TEXT, product_id TEXT, quantity INTEGER, unit_price NUMERIC(12,2)",
    "products": "product_id TEXT PRIMARY KEY, name TEXT, category TEXT, price NUMERIC(12,2), "
    "url TEXT",
}


@pytest.fixture
def pg_schema() -> Iterator[str]:
    rows = {}
    for table in DDL:
        header, *lines = FILES[f"data/{table}.csv"].strip().splitlines()
        names = header.split(",")
        rows[table] = [dict(zip(names, line.split(","), strict=True)) for line in lines]
    with postgres_tables("reco", DDL, rows) as schema:
        yield schema


@pytest.mark.postgres
def test_the_same_recommendations_pushed_down_to_postgres(
    make_project: ProjectFactory, pg_schema: str
) -> None:
    head = BASE_CONFIG.split("data:")[0]
    tables = "\n".join(f"  {t}: {pg_schema}.{t}" for t in DDL)
    config = f"{head}data:\n  url: {POSTGRES_URL}\n{tables}\nledger: sqlite:///.clvflow/ledger.db\n"
    got, dialect = _recommendations(make_project(config=config))
    assert dialect == "postgresql"
    assert got == EXPECTED


def _reference(data_dir: Path, as_of: dt.datetime, limit: int = 3) -> dict[str, list[str]]:
    """Recommendations worked out in plain Python from the CSV files (the definition in
    the module docstring), independently of the SQL."""
    import csv
    from collections import Counter
    from itertools import permutations

    def rows(name: str) -> list[dict[str, str]]:
        with (data_dir / f"{name}.csv").open(encoding="utf-8") as f:
            return list(csv.DictReader(f))

    placed = {
        o["order_id"]: o["customer_id"]
        for o in rows("orders")
        if dt.datetime.fromisoformat(o["placed_at"]) <= as_of
    }
    baskets: dict[str, set[str]] = {}
    for item in rows("order_items"):
        if item["order_id"] in placed:
            baskets.setdefault(item["order_id"], set()).add(item["product_id"])
    pairs: Counter[tuple[str, str]] = Counter()
    sold: Counter[str] = Counter()
    owned: dict[str, set[str]] = {}
    for order, basket in baskets.items():
        pairs.update(permutations(basket, 2))
        sold.update(basket)
        owned.setdefault(placed[order], set()).update(basket)
    best = sorted(sold, key=lambda p: (-sold[p], p))[:20]
    products = {p["product_id"] for p in rows("products")}
    out: dict[str, list[str]] = {}
    for customer in (c["customer_id"] for c in rows("customers")):
        mine = owned.get(customer, set())
        score: Counter[str] = Counter()
        for (src, dst), n in pairs.items():
            if src in mine and dst not in mine:
                score[dst] += n
        chosen = sorted(score, key=lambda p: (-score[p], p))[:limit]
        extra = [p for p in best if p not in mine and p not in chosen][: limit - len(chosen)]
        out[customer] = chosen + [p for p in extra if p in products]
    return out


def test_recommendations_for_a_generated_shop_match_a_plain_python_reference(
    make_project: ProjectFactory,
) -> None:
    from clvflow.demo.shop import ShopSize, generate_shop

    root = make_project()
    reference_day = dt.date(2026, 11, 23)
    generate_shop(
        root / "data", reference=reference_day, seed=3, size=ShopSize(customers=300, orders=1200)
    )
    as_of = dt.datetime.combine(reference_day, dt.time(12))
    expected = _reference(root / "data", as_of)
    data = open_shop_data(Project.load(root))
    try:
        recommender = Recommender(data, as_of)
        ids = sorted(expected)
        got: dict[str, list[str]] = {}
        for start in range(0, len(ids), 64):  # in batches, as a run asks
            batch = recommender.for_customers(ids[start : start + 64])
            got.update({c: [p["product_id"] for p in ps] for c, ps in batch.items()})
    finally:
        data.close()
    assert sum(1 for c in ids if expected[c]) > 250
    assert got == expected


def test_one_query_per_batch_gives_what_the_two_lookups_give(
    make_project: ProjectFactory,
) -> None:
    from clvflow.demo.shop import ShopSize, generate_shop
    from clvflow.personalization.batch import Personalization

    root = make_project()
    generate_shop(
        root / "data", reference=AS_OF.date(), seed=5, size=ShopSize(customers=200, orders=700)
    )
    data = open_shop_data(Project.load(root))
    try:
        ids = [
            str(r[0]) for r in data.rows(f"{data.with_clause()}SELECT customer_id FROM customers")
        ]
        joined = Personalization(data, AS_OF)
        orders, recos = joined.for_customers(ids)
        assert orders == OrderLookup(data, AS_OF).for_customers(ids)
        assert recos == Recommender(data, AS_OF).for_customers(ids)
        assert len(orders) > 100 and len(recos) == len(ids)
    finally:
        data.close()


def test_a_batch_without_order_lines(make_project: ProjectFactory) -> None:
    from clvflow.personalization.batch import Personalization

    data = open_shop_data(Project.load(make_project(FILES)))
    try:
        ids = sorted(EXPECTED)
        lookup = Personalization(data, AS_OF)
        with_lines, recos = lookup.for_customers(ids)
        without, same_recos = lookup.for_customers(ids, items=False)
    finally:
        data.close()
    assert recos == same_recos and set(without) == set(with_lines) == {"X1", "X2", "X4", "X5", "X7"}
    assert all(o.items == [] for o in without.values())
    assert {c: (o.order_id, o.total) for c, o in without.items()} == {
        c: (o.order_id, o.total) for c, o in with_lines.items()
    }
    assert [i["product_id"] for i in with_lines["X7"].items] == ["P1", "P2", "P3", "P4"]


def test_rows_read_ahead_are_what_each_batch_would_read(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the order of the run's customers known, rows come READ_AHEAD at a time; every
    batch still gets exactly its customers' orders and recommendations, with or without
    order lines, also for customers without a row, asked twice, or not announced."""
    from clvflow.demo.shop import ShopSize, generate_shop
    from clvflow.personalization import batch
    from clvflow.personalization.batch import Personalization

    root = make_project()
    generate_shop(
        root / "data", reference=AS_OF.date(), seed=5, size=ShopSize(customers=300, orders=900)
    )
    monkeypatch.setattr(batch, "READ_AHEAD", 120)
    data = open_shop_data(Project.load(root))
    try:
        ids = sorted(
            str(r[0]) for r in data.rows(f"{data.with_clause()}SELECT customer_id FROM customers")
        )
        plain = Personalization(data, AS_OF)
        ahead = Personalization(data, AS_OF)
        ahead.expect(ids[:-10])  # the last ten are not announced
        queries: list[int] = []
        query = Personalization._query

        def counted(self: Personalization, *args: object) -> list[tuple[object, ...]]:
            if self is ahead:
                queries.append(1)
            return query(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(Personalization, "_query", counted)
        batches = [ids[i : i + 25] for i in range(0, len(ids), 25)]
        batches.insert(3, batches[2])  # a batch asked for again (a retry)
        for number, customers in enumerate(batches):
            items = number % 3 != 1  # some templates read no order lines
            assert ahead.for_customers(customers, items) == plain.for_customers(customers, items)
        without_rows = [c for c in ids if c not in plain.for_customers(ids)[0]]
    finally:
        data.close()
    assert without_rows  # customers with no order: no row to read ahead, still answered
    assert len(queries) < len(batches) / 3  # read ahead instead of a query per batch
