"""Golden compiled SQL of every shipped segment (DuckDB dialect, as of AS_OF).

A change in the compiler shows up here as a readable diff. To accept an intended change:
``CLVFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_segment_golden_sql.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from tests.conftest import AS_OF, ROOT

GOLDEN = ROOT / "tests" / "golden"
NAMES = sorted(p.stem for p in (ROOT / "segments").glob("*.yaml"))


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
