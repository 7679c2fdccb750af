"""Golden compiled SQL of every shipped segment (DuckDB dialect, as of AS_OF).

A change in the compiler shows up here as a readable diff. To accept an intended change:
``CLVFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_segment_golden_sql.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clvflow.cli.main import main
from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import evaluate_segments
from tests.conftest import AS_OF, ROOT

GOLDEN = ROOT / "tests" / "golden"
NAMES = sorted(p.stem for p in (ROOT / "segments").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_sql_matches_golden(demo_project: Path, name: str) -> None:
    project = Project.load(demo_project)
    data = open_shop_data(project)
    sql = compile_segment(
        SegmentCatalog.load(project.segments_dir), name, data, AS_OF
    ).members_sql()
    data.close()
    golden = GOLDEN / f"{name}.sql"
    if os.environ.get("CLVFLOW_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(sql + "\n")
    assert sql + "\n" == golden.read_text()


@pytest.mark.slow
def test_printed_sql_runs_and_selects_the_members(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clvflow segments sql NAME` prints one self-contained query per segment: run as it is
    on the shop's relations, it selects what a run (all segments evaluated together) does."""
    project = Project.load(demo_project)
    data = open_shop_data(project)
    try:
        together = evaluate_segments(SegmentCatalog.load(project.segments_dir), NAMES, data, AS_OF)
        for name in NAMES:
            args = ["segments", "sql", name, "--project", str(demo_project)]
            assert main([*args, "--as-of", AS_OF.isoformat()]) == 0
            sql = capsys.readouterr().out
            assert sql.count("SELECT cf.customer_id\nFROM customer_facts AS cf") == 1
            assert [r[0] for r in data.rows(sql)] == together[name], name
        assert any(together.values())
    finally:
        data.close()
