"""The console's snapshot of the shop gives exactly what the segment functions give: the
customers' rows, each segment's members and counts; a broken segment file is shown with
the error `clvflow validate` gives."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import evaluate_segments
from clvflow.segments.members import customer_rows, member_frame
from clvflow.validation import validate_project
from clvflow.web.console.snapshot import Snapshot
from tests import test_segments_postgres as pg
from tests.conftest import AS_OF, ProjectFactory


@pytest.fixture
def snapshot(demo_project: Path) -> Iterator[Snapshot]:
    made = Snapshot(Project.load(demo_project), AS_OF)
    yield made
    made.close()


def test_rows_members_and_counts_match_the_segment_functions(snapshot: Snapshot) -> None:
    project = snapshot.project
    catalog = SegmentCatalog.load(project.segments_dir)
    data = open_shop_data(project)
    try:
        expected = evaluate_segments(catalog, catalog.names(), data, AS_OF)
        assert snapshot.counts() == {name: len(ids) for name, ids in expected.items()}
        for name in ("lapsed", "top_spenders", "wedding_invitations"):
            own = member_frame(data, compile_segment(catalog, name, data, AS_OF), AS_OF)
            pd.testing.assert_frame_equal(snapshot.member_frame(name), own)
        ids = ["C000017", "C000002", "nobody", "C000940"]
        rows = customer_rows(data, ids, AS_OF)
        assert len(rows) == 3 and snapshot.customers(ids) == rows
    finally:
        data.close()
    lapsed = expected["lapsed"][0]
    member_of = snapshot.memberships(lapsed)
    assert member_of["lapsed"] is True
    assert {n for n, yes in member_of.items() if yes} == {
        n for n, ids in expected.items() if lapsed in ids
    }
    page = snapshot.members("lapsed", ["customer_id", "orders_count"], limit=3, offset=1)
    assert [r["customer_id"] for r in page] == expected["lapsed"][1:4]


def test_search_by_id_or_email_start(snapshot: Snapshot) -> None:
    (row,) = snapshot.customers(["C000017"])
    assert [r["customer_id"] for r in snapshot.search("c000017")] == ["C000017"]
    found = snapshot.search(str(row["email"])[:6].upper())
    assert "C000017" in [r["customer_id"] for r in found]
    assert snapshot.search("   ") == []


def test_a_broken_segment_shows_the_validate_error(demo_project: Path) -> None:
    (demo_project / "segments" / "broken.yaml").write_text(
        "description: Typo\nwhere:\n  orders_cuont: {at_least: 2}\n"
    )
    (demo_project / "segments" / "unreadable.yaml").write_text("description: [\n")
    project = Project.load(demo_project)
    snapshot = Snapshot(project, AS_OF)
    try:
        broken, unreadable = snapshot.segments["broken"], snapshot.segments["unreadable"]
        assert broken.error is not None and "did you mean 'orders_count'" in broken.error
        assert unreadable.error is not None and unreadable.predicate == ""
        assert "lapsed" in snapshot.counts() and "broken" not in snapshot.counts()
    finally:
        snapshot.close()
    worded = {e.render() for e in validate_project(project, AS_OF).errors}
    assert unreadable.error in worded  # validate stops at the first file that does not load
    (demo_project / "segments" / "unreadable.yaml").unlink()
    worded = {e.render() for e in validate_project(project, AS_OF).errors}
    assert broken.error in worded


shop_schema = pg.shop_schema  # the tiny shop in PostgreSQL (a fixture)


def _nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _same(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> bool:
    """Equal rows, a missing float (NaN) equal to another."""

    def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: None if _nan(v) else v for k, v in row.items()} for row in rows]

    return plain(ours) == plain(theirs)


PG_SEGMENTS = {
    "segments/repeat.yaml": "description: Repeat\nwhere:\n  orders_count: {at_least: 2}\n",
    "segments/top.yaml": "description: Top half\nwhere:\n  historical_clv: {top_percent: 50}\n",
    "segments/cards.yaml": (
        "description: Bought cards\nwhere:\n  all:\n    - segment: repeat\n"
        "    - orders: {where: {category: invitations}, count: {at_least: 1}}\n"
    ),
}


@pytest.mark.postgres
def test_on_postgresql_the_snapshot_is_a_query_of_the_shops_database(
    make_project: ProjectFactory, shop_schema: str
) -> None:
    project = Project.load(make_project(PG_SEGMENTS, config=pg._pg_config(shop_schema)))
    snapshot = Snapshot(project, AS_OF)
    data = open_shop_data(project)
    try:
        assert snapshot.data.dialect == "postgresql" and snapshot.data.con is None
        catalog = SegmentCatalog.load(project.segments_dir)
        expected = evaluate_segments(catalog, catalog.names(), data, AS_OF)
        assert snapshot.counts() == {name: len(ids) for name, ids in expected.items()}
        assert snapshot.counts()["repeat"] > 0
        ids = [*sorted({i for found in expected.values() for i in found}), "C1", "C4"]
        assert _same(snapshot.customers(ids), customer_rows(data, ids, AS_OF))
        for name in catalog.names():
            own = member_frame(data, compile_segment(catalog, name, data, AS_OF), AS_OF)
            pd.testing.assert_frame_equal(snapshot.member_frame(name), own)
    finally:
        data.close()
        snapshot.close()
