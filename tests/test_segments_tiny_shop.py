"""Segment membership on the tiny hand-made shop (tests/data/tiny_shop), as of
2026-11-23 12:00. Every expected set below was worked out by hand from the CSV files:

    C1 en couple  wedding 2027-03-01  orders O1 2025-01-10 100 (invitations), O2 2026-11-20 50 (2× thank-you)
    C2 hu bridesm wedding 2026-12-10  orders O3 06-01 30, O4 07-01 30 (save-the-dates), O5 08-01 40 (invitations)
    C3 ru -       no marketing        order  O6 2026-11-22 200 (album)
    C4 hu couple  wedding 2026-10-20  orders O7 02-01 80 (2× invitations), O8 03-01 20 (save-the-dates)
    C5 -  -       order O9 on 2026-12-01 is after as_of, so no orders yet
    C6 en -       invalid email, no orders
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import member_ids
from tests.conftest import AS_OF, ProjectFactory

CASES: list[tuple[str, str, list[str]]] = [
    ("at_least", "orders_count: {at_least: 2}", ["C1", "C2", "C4"]),
    ("bare scalar equals", "orders_count: 0", ["C5", "C6"]),
    (
        "between low inclusive high exclusive",
        "total_spent: {between: [100, 200]}",
        ["C1", "C2", "C4"],
    ),
    ("greater_than", "total_spent: {greater_than: 100}", ["C1", "C3"]),
    ("less_than and at_most ANDed", "total_spent: {greater_than: 0, at_most: 100}", ["C2", "C4"]),
    ("before relative", "last_order_at: {before: 90 days ago}", ["C2", "C4"]),
    (
        "not is the complement",
        "not: {last_order_at: {before: 90 days ago}}",
        ["C1", "C3", "C5", "C6"],
    ),
    ("within last", "last_order_at: {within: last 7 days}", ["C1", "C3"]),
    ("not_in skips missing", "locale: {not_in: [en]}", ["C2", "C3", "C4"]),
    ("not_equals skips missing", "locale: {not_equals: en}", ["C2", "C3", "C4"]),
    ("in", "locale: {in: [en, ru]}", ["C1", "C3", "C6"]),
    ("is_set false", "locale: {is_set: false}", ["C5"]),
    ("is_set true", "wedding_date: {is_set: true}", ["C1", "C2", "C4"]),
    ("contains is case-insensitive", "vip_note: {contains: gold}", ["C1", "C5"]),
    ("starts_with", "vip_note: {starts_with: GOLD}", ["C1", "C5"]),
    ("ends_with", "vip_note: {ends_with: PLUS}", ["C5"]),
    ("equals text with accents", "first_name: Béla", ["C2"]),
    ("date within next", "wedding_date: {within: next 30 days}", ["C2"]),
    ("date after today", "wedding_date: {after: today}", ["C1", "C2"]),
    ("date before today", "wedding_date: {before: today}", ["C4"]),
    ("date between relative", "wedding_date: {between: [in 3 weeks, in 6 months]}", ["C1"]),
    ("absolute ISO date", "wedding_date: {at_least: 2026-12-10}", ["C1", "C2"]),
    ("boolean", "accepts_marketing: false", ["C3"]),
    ("top_percent", "total_spent: {top_percent: 20}", ["C1", "C3"]),
    ("top_percent includes ties", "total_spent: {top_percent: 50}", ["C1", "C2", "C3", "C4"]),
    ("bottom_percent", "total_spent: {bottom_percent: 30}", ["C5", "C6"]),
    (
        "top_percent over customers with a value",
        "loyalty_points: {top_percent: 50}",
        ["C1", "C4", "C5"],
    ),
    ("days since last order", "days_since_last_order: {at_most: 3}", ["C1", "C3"]),
    (
        "orders where on product column",
        "orders: {where: {category: invitations}}",
        ["C1", "C2", "C4"],
    ),
    (
        "orders where within",
        "orders: {where: {category: invitations}, within: last 6 months}",
        ["C2"],
    ),
    (
        "bought invitations but never thank-you cards",
        "all: [{orders: {where: {category: invitations}}}, "
        "{not: {orders: {where: {category: thank-you-cards}}}}]",
        ["C2", "C4"],
    ),
    (
        "no order in a window",
        "orders: {within: last 90 days, count: {equals: 0}}",
        ["C2", "C4", "C5", "C6"],
    ),
    (
        "count of matching orders",
        "orders: {where: {category: save-the-dates}, count: {at_least: 2}}",
        ["C2"],
    ),
    ("total of orders", "orders: {total: {at_least: 150}}", ["C1", "C3"]),
    ("order-level column", "orders: {where: {total: {greater_than: 60}}}", ["C1", "C3", "C4"]),
    (
        "item conditions hold on the same item",
        "orders: {where: {all: [{category: invitations}, {quantity: {at_least: 2}}]}}",
        ["C4"],
    ),
    ("any", "any: [{locale: ru}, {orders_count: 0}]", ["C3", "C5", "C6"]),
]


def _members(make_project: ProjectFactory, files: dict[str, str], name: str) -> list[str]:
    root = make_project(files)
    project = Project.load(root)
    data = open_shop_data(project)
    catalog = SegmentCatalog.load(project.segments_dir)
    return member_ids(data, compile_segment(catalog, name, data, AS_OF))


@pytest.mark.parametrize(("label", "condition", "expected"), CASES, ids=[c[0] for c in CASES])
def test_operator_table(
    make_project: ProjectFactory, label: str, condition: str, expected: list[str]
) -> None:
    files = {"segments/s.yaml": f"description: {label}\nwhere:\n  {condition}\n"}
    assert _members(make_project, files, "s") == expected


def test_segment_reference_is_inlined(make_project: ProjectFactory) -> None:
    files = {
        "segments/repeaters.yaml": "description: r\nwhere:\n  orders_count: {at_least: 2}\n",
        "segments/foreign_repeaters.yaml": (
            "description: f\nwhere:\n  all:\n    - segment: repeaters\n    - not: {locale: hu}\n"
        ),
    }
    assert _members(make_project, files, "foreign_repeaters") == ["C1"]


def test_members_exclude_orders_after_as_of(make_project: ProjectFactory) -> None:
    files = {"segments/s.yaml": "description: d\nwhere:\n  total_spent: {at_least: 999}\n"}
    assert _members(make_project, files, "s") == []


def test_rfm_segment_names_every_buyer(make_project: ProjectFactory, tmp_path: Path) -> None:
    files = {"segments/s.yaml": "description: d\nwhere:\n  rfm_segment: {is_set: true}\n"}
    assert _members(make_project, files, "s") == ["C1", "C2", "C3", "C4"]
