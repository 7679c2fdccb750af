"""`clvflow segments members` on a fresh project folder — clvflow.yaml pointing at CSV files
written here, and segment files of its own — returns exactly the customers the contract
selects, for every operator and condition form of DESIGN.md "Segments".

The shop, as of 2026-11-23 12:00 (Europe/Budapest); every expected set below was worked
out by hand from it:

    K1 Anna   en  Gold      100  wedding 2026-12-01  joined 2026-11-23 11:00  vip
    K2 Béla   hu  silver    250  wedding 2026-11-23  joined 2026-11-16 12:00  not vip
    K3 Csilla hu  gold plus   0  -                   joined 2025-11-23 12:00  vip
    K4 Dmitri ru  -          40  wedding 2027-03-01  joined 2026-10-23 12:00  -
    K5 Eve    -   bronze      -  wedding 2026-10-24  -                        not vip
    K6 Fay    en  Platinum 1000  -                   joined 2024-01-01 09:00  vip

    O1 K1 2026-11-20 10:00   50  P1 invitations ×2 at 25
    O2 K1 2026-08-01 10:00  150  P2 album ×1 at 150
    O3 K2 2026-11-23 12:00   20  P3 thank-you cards ×1 at 20  (exactly as_of)
    O4 K3 2025-12-01 10:00  300  P1 invitations ×3 at 100
    O5 K3 2026-02-01 10:00  100  P3 thank-you cards ×2 at 50
    O6 K3 2026-05-01 10:00  100  P2 album ×1 at 100
    O7 K4 2026-11-23 12:30   80  P1 — after as_of: it does not exist yet
    O8 K6 2024-06-01 10:00  500  P2 album ×5 at 100
    O9 K9 2026-11-01 10:00  999  — K9 is no customer (erased): counted for nobody

Derived, as of then: K1 2 orders, 200 spent (avg 100), first 2026-08-01 (114 days ago),
last 2026-11-20 (3 days ago); K2 1 order, 20, at as_of (0 days); K3 3 orders, 500 (avg
166.67), first 2025-12-01, last 2026-05-01 (206 days ago); K6 1 order, 500, 2024-06-01;
K4 and K5 no orders (0 orders, 0 spent, every other derived value missing).
RFM among the four buyers (percent rank = (rank − 1) / 3): recency K6 1, K3 2, K1 4,
K2 5; frequency K2 and K6 1 (tied lowest), K1 4, K3 5; monetary K2 1, K1 2, K3 and K6 4.
Segments: K1 R4 F4 champions; K2 R5 F1 new; K3 R2 F5 cant_lose; K6 R1 F1 lost.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from clvflow.cli.main import main
from tests.conftest import BASE_CONFIG, write_files

AS_OF = ["--as-of", "2026-11-23 12:00"]
AS_OF_TIME = dt.datetime(2026, 11, 23, 12, 0)

CUSTOMERS = """\
customer_id,email,first_name,locale,tier,points,wedding_date,joined_at,vip
K1,k1@example.com,Anna,en,Gold,100,2026-12-01,2026-11-23 11:00:00,true
K2,k2@example.com,Béla,hu,silver,250,2026-11-23,2026-11-16 12:00:00,false
K3,k3@example.com,Csilla,hu,gold plus,0,,2025-11-23 12:00:00,true
K4,k4@example.com,Dmitri,ru,,40,2027-03-01,2026-10-23 12:00:00,
K5,k5@example.com,Eve,,bronze,,2026-10-24,,false
K6,k6@example.com,Fay,en,Platinum,1000,,2024-01-01 09:00:00,true
"""
ORDERS = """\
order_id,customer_id,placed_at,total
O1,K1,2026-11-20 10:00:00,50.00
O2,K1,2026-08-01 10:00:00,150.00
O3,K2,2026-11-23 12:00:00,20.00
O4,K3,2025-12-01 10:00:00,300.00
O5,K3,2026-02-01 10:00:00,100.00
O6,K3,2026-05-01 10:00:00,100.00
O7,K4,2026-11-23 12:30:00,80.00
O8,K6,2024-06-01 10:00:00,500.00
O9,K9,2026-11-01 10:00:00,999.00
"""
ITEMS = """\
order_id,product_id,quantity,unit_price
O1,P1,2,25.00
O2,P2,1,150.00
O3,P3,1,20.00
O4,P1,3,100.00
O5,P3,2,50.00
O6,P2,1,100.00
O7,P1,1,80.00
O8,P2,5,100.00
"""
PRODUCTS = """\
product_id,name,category,price
P1,Gold Foil Invitation,invitations,25.00
P2,Linen Album,albums,150.00
P3,Letterpress Thank-You Cards,thank-you-cards,20.00
"""
# segments the cases refer to
REFERRED = {
    "buyers": "orders_count: {at_least: 1}",
    "hungarians": "locale: hu",
}

# (operator or form, condition, expected members)
CASES: list[tuple[str, str, list[str]]] = [
    # equality and sets (text equality is exact; a missing value fails every test)
    ("bare scalar is equals", "tier: Gold", ["K1"]),
    ("equals", "tier: {equals: Gold}", ["K1"]),
    ("not_equals skips missing", "tier: {not_equals: Gold}", ["K2", "K3", "K5", "K6"]),
    ("in", "locale: {in: [hu, ru]}", ["K2", "K3", "K4"]),
    ("not_in skips missing", "locale: {not_in: [hu, ru]}", ["K1", "K6"]),
    ("not_in empty list", "locale: {not_in: []}", ["K1", "K2", "K3", "K4", "K6"]),
    ("in empty list", "locale: {in: []}", []),
    # numbers
    ("at_least", "points: {at_least: 100}", ["K1", "K2", "K6"]),
    ("at_most", "points: {at_most: 40}", ["K3", "K4"]),
    ("greater_than", "points: {greater_than: 100}", ["K2", "K6"]),
    ("less_than", "points: {less_than: 100}", ["K3", "K4"]),
    ("between low inclusive high exclusive", "points: {between: [40, 250]}", ["K1", "K4"]),
    ("several operators are ANDed", "points: {at_least: 40, less_than: 1000}", ["K1", "K2", "K4"]),
    # top/bottom_percent: k = ceil(N × P / 100) among customers with a value, ties in
    ("top_percent", "points: {top_percent: 40}", ["K2", "K6"]),  # N 5, k 2: >= 250
    ("bottom_percent", "points: {bottom_percent: 20}", ["K3"]),  # k 1: <= 0
    ("top_percent with ties", "total_spent: {top_percent: 50}", ["K1", "K3", "K6"]),  # >= 200
    ("bottom_percent over buyers", "historical_clv: {bottom_percent: 50}", ["K1", "K2"]),
    # null checks
    ("is_set false", "tier: {is_set: false}", ["K4"]),
    ("is_set true on a bool", "vip: {is_set: true}", ["K1", "K2", "K3", "K5", "K6"]),
    ("is_set false on derived", "avg_order_value: {is_set: false}", ["K4", "K5"]),
    # text, case-insensitive
    ("contains", "tier: {contains: GOLD}", ["K1", "K3"]),
    ("starts_with", "tier: {starts_with: S}", ["K2"]),
    ("ends_with", "tier: {ends_with: NUM}", ["K6"]),
    ("starts_with accented", "first_name: {starts_with: BÉ}", ["K2"]),
    # booleans
    ("boolean", "vip: true", ["K1", "K3", "K6"]),
    ("boolean not_equals skips missing", "vip: {not_equals: true}", ["K2", "K5"]),
    # timestamps (before/after strict, at_least/at_most inclusive, windows closed)
    ("before N days ago", "joined_at: {before: 7 days ago}", ["K3", "K4", "K6"]),
    ("after today", "joined_at: {after: today}", ["K1"]),
    ("at_least N years ago", "joined_at: {at_least: 1 year ago}", ["K1", "K2", "K3", "K4"]),
    ("within last N months", "joined_at: {within: last 1 month}", ["K1", "K2", "K4"]),
    ("after an ISO timestamp", "joined_at: {after: '2026-11-16 12:00:00'}", ["K1"]),
    ("between ISO date and now", "joined_at: {between: [2026-10-23, now]}", ["K1", "K2", "K4"]),
    (
        "ISO timestamp with offset is an instant",  # 10:30 UTC = 11:30 in Budapest
        "joined_at: {before: '2026-11-23T10:30:00+00:00'}",
        ["K1", "K2", "K3", "K4", "K6"],
    ),
    # dates compare by calendar day
    ("date within next N weeks", "wedding_date: {within: next 2 weeks}", ["K1", "K2"]),
    ("date within last N days", "wedding_date: {within: last 30 days}", ["K2", "K5"]),
    ("date after in N months", "wedding_date: {after: in 3 months}", ["K4"]),
    ("date before today", "wedding_date: {before: today}", ["K5"]),
    ("date at_most ISO date", "wedding_date: {at_most: 2026-11-23}", ["K2", "K5"]),
    ("date between relative", "wedding_date: {between: [today, in 1 year]}", ["K1", "K2", "K4"]),
    # derived attributes as of as_of
    ("orders_count 0 (later order ignored)", "orders_count: 0", ["K4", "K5"]),
    ("orders_count", "orders_count: {at_least: 2}", ["K1", "K3"]),
    ("total_spent", "total_spent: {greater_than: 200}", ["K3", "K6"]),
    ("avg_order_value", "avg_order_value: {at_least: 100}", ["K1", "K3", "K6"]),
    ("first_order_at", "first_order_at: {before: 1 year ago}", ["K6"]),
    ("last_order_at within", "last_order_at: {within: last 7 days}", ["K1", "K2"]),
    ("days_since_last_order", "days_since_last_order: {at_least: 200}", ["K3", "K6"]),
    ("days_since_first_order", "days_since_first_order: 114", ["K1"]),
    ("rfm_recency", "rfm_recency: 5", ["K2"]),
    ("rfm_frequency", "rfm_frequency: {at_least: 4}", ["K1", "K3"]),
    ("rfm_monetary", "rfm_monetary: 4", ["K3", "K6"]),
    ("rfm_segment champions", "rfm_segment: champions", ["K1"]),
    ("rfm_segment in", "rfm_segment: {in: [new, lost]}", ["K2", "K6"]),
    ("rfm_segment cant_lose", "rfm_segment: cant_lose", ["K3"]),
    ("historical_clv", "historical_clv: {at_least: 500}", ["K3", "K6"]),
    ("historical_clv missing", "historical_clv: {is_set: false}", ["K4", "K5"]),
    # all / any / not / segment
    ("all", "all: [{locale: hu}, {orders_count: {at_least: 2}}]", ["K3"]),
    ("any", "any: [{locale: ru}, {points: {at_least: 1000}}]", ["K4", "K6"]),
    ("not is the complement", "not: {locale: en}", ["K2", "K3", "K4", "K5"]),
    ("not not", "not: {not: {locale: en}}", ["K1", "K6"]),
    ("segment reference", "segment: buyers", ["K1", "K2", "K3", "K6"]),
    (
        "segment references with not",
        "all: [{segment: buyers}, {not: {segment: hungarians}}]",
        ["K1", "K6"],
    ),
    # orders: {where, within, count, total}
    ("orders within", "orders: {within: last 7 days}", ["K1", "K2"]),
    ("not orders within", "not: {orders: {within: last 30 days}}", ["K3", "K4", "K5", "K6"]),
    ("orders where product column", "orders: {where: {category: invitations}}", ["K1", "K3"]),
    (
        "orders where and within",
        "orders: {where: {category: invitations}, within: last 6 months}",
        ["K1"],
    ),
    (
        "bought invitations but never thank-you cards",
        "all: [{orders: {where: {category: invitations}}}, "
        "{not: {orders: {where: {category: thank-you-cards}}}}]",
        ["K1"],
    ),
    (
        "no order in a window",
        "orders: {within: last 90 days, count: {equals: 0}}",
        ["K3", "K4", "K5", "K6"],
    ),
    ("orders count and total", "orders: {count: {at_least: 2}, total: {at_least: 300}}", ["K3"]),
    (
        "orders where order column",
        "orders: {where: {total: {greater_than: 100}}}",
        ["K1", "K3", "K6"],
    ),
    (
        "item conditions hold on the same item",
        "orders: {where: {all: [{category: invitations}, {quantity: {at_least: 3}}]}}",
        ["K3"],
    ),
    (
        "total of orders matching on items",
        "orders: {where: {name: {contains: ALBUM}}, total: {at_least: 150}}",
        ["K1", "K6"],
    ),
    (
        "count of orders matching on items, within",
        "orders: {where: {unit_price: {at_least: 100}}, within: last 1 year, count: 2}",
        ["K3"],
    ),
    (
        "orders where any of item and product columns",
        "orders: {where: {any: [{category: thank-you-cards}, {price: {greater_than: 100}}]}, "
        "count: {at_least: 1}}",
        ["K1", "K2", "K3", "K6"],
    ),
]
NAMES = [f"case_{i:02d}" for i in range(len(CASES))]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project: clvflow.yaml, CSV files and one segment file per case."""
    root = tmp_path_factory.mktemp("fresh-shop")
    files = {
        "clvflow.yaml": BASE_CONFIG,
        "data/customers.csv": CUSTOMERS,
        "data/orders.csv": ORDERS,
        "data/order_items.csv": ITEMS,
        "data/products.csv": PRODUCTS,
    }
    for name, condition in REFERRED.items():
        files[f"segments/{name}.yaml"] = f"description: {name}\nwhere:\n  {condition}\n"
    for name, (label, condition, _) in zip(NAMES, CASES, strict=True):
        files[f"segments/{name}.yaml"] = f"description: {label}\nwhere:\n  {condition}\n"
    write_files(root, files)
    (root / "templates").mkdir()
    return root


def _members(shop: Path, name: str, capsys: pytest.CaptureFixture[str], fmt: str = "json") -> str:
    args = ["segments", "members", name, "--format", fmt, "--project", str(shop), *AS_OF]
    assert main(args) == 0
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "condition", "expected"),
    [(n, c[1], c[2]) for n, c in zip(NAMES, CASES, strict=True)],
    ids=[c[0] for c in CASES],
)
def test_members_follow_the_contract(
    shop: Path, name: str, condition: str, expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert json.loads(_members(shop, name, capsys)) == expected, condition


def test_members_csv_is_one_id_per_line_in_order(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _members(shop, "buyers", capsys, "csv") == "customer_id\nK1\nK2\nK3\nK6\n"


def test_list_counts_every_segment_together(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`segments list` evaluates all segments at once; its counts are the members' counts."""
    assert main(["segments", "list", "--project", str(shop), *AS_OF]) == 0
    rows = {
        cells[0]: cells[1]
        for line in capsys.readouterr().out.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) >= 2
    }
    for name, (_, _, expected) in zip(NAMES, CASES, strict=True):
        assert rows[name] == str(len(expected)), name
    assert rows["buyers"] == "4"
