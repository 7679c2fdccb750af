"""Segments pushed down to the machine's real PostgreSQL agree with DuckDB over files.

The tiny shop is loaded into a fresh schema of database ``test``; a project points
``data.url`` at it; every case of the operator table must select the same customers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import member_ids
from tests.conftest import AS_OF, BASE_CONFIG, POSTGRES_URL, TINY_SHOP, ProjectFactory
from tests.test_segments_tiny_shop import CASES

pytestmark = pytest.mark.postgres

DDL = {
    "customers": """customer_id TEXT PRIMARY KEY, email TEXT, first_name TEXT, locale TEXT,
        role TEXT, wedding_date DATE, loyalty_points INTEGER, vip_note TEXT,
        accepts_marketing BOOLEAN""",
    "orders": "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TIMESTAMP, total NUMERIC(12,2), currency TEXT",
    "order_items": "order_id TEXT, product_id TEXT, quantity INTEGER, unit_price NUMERIC(12,2)",
    "products": "product_id TEXT PRIMARY KEY, name TEXT, category TEXT, price NUMERIC(12,2), url TEXT",
}


@pytest.fixture(scope="module")
def shop_schema() -> Iterator[str]:
    schema = f"shop_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as con:
        con.execute(text(f'CREATE SCHEMA "{schema}"'))
        for table, columns in DDL.items():
            con.execute(text(f'CREATE TABLE "{schema}"."{table}" ({columns})'))
    for table in DDL:
        frame = pd.read_csv(TINY_SHOP / f"{table}.csv", dtype=str, keep_default_na=False)
        frame = frame.replace({"": None})
        with engine.begin() as con:
            for row in frame.to_dict(orient="records"):
                names = ", ".join(f'"{k}"' for k in row)
                marks = ", ".join(f":{k}" for k in row)
                con.execute(
                    text(f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})'), row
                )
    try:
        yield schema
    finally:
        with engine.begin() as con:
            con.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _pg_config(schema: str) -> str:
    head = BASE_CONFIG.split("data:")[0]
    tables = "\n".join(f"  {t}: {schema}.{t}" for t in DDL)
    return f"{head}data:\n  url: {POSTGRES_URL}\n{tables}\nledger: sqlite:///.clvflow/ledger.db\n"


def _members(root: Path, name: str) -> tuple[list[str], str]:
    project = Project.load(root)
    data = open_shop_data(project)
    try:
        compiled = compile_segment(SegmentCatalog.load(project.segments_dir), name, data, AS_OF)
        return member_ids(data, compiled), data.dialect
    finally:
        data.close()


@pytest.mark.parametrize(("label", "condition", "expected"), CASES, ids=[c[0] for c in CASES])
def test_postgres_agrees_with_duckdb(
    make_project: ProjectFactory, shop_schema: str, label: str, condition: str, expected: list[str]
) -> None:
    files = {"segments/s.yaml": f"description: {label}\nwhere:\n  {condition}\n"}
    root = make_project(files, config=_pg_config(shop_schema))
    members, dialect = _members(root, "s")
    assert dialect == "postgresql"
    assert members == expected


def test_the_query_runs_inside_postgres(make_project: ProjectFactory, shop_schema: str) -> None:
    files = {
        "segments/s.yaml": "description: d\nwhere:\n  orders: {where: {category: invitations}}\n"
    }
    project = Project.load(make_project(files, config=_pg_config(shop_schema)))
    data = open_shop_data(project)
    compiled = compile_segment(SegmentCatalog.load(project.segments_dir), "s", data, AS_OF)
    sql = compiled.members_sql()
    assert f'FROM "{shop_schema}"."orders"' in sql
    assert data.engine is not None
    plan = "\n".join(r[0] for r in data.rows("EXPLAIN " + sql))
    assert "Scan" in plan  # PostgreSQL planned (and so would execute) the whole query
    data.close()


def test_a_campaign_runs_on_postgres_data(make_project: ProjectFactory, shop_schema: str) -> None:
    from clvflow.campaigns.catalog import load_campaigns
    from clvflow.campaigns.runner import run_campaign
    from tests.test_campaign_run import FILES

    project = Project.load(make_project(FILES, config=_pg_config(shop_schema)))
    summary = run_campaign(project, load_campaigns(project.prefect_file)["everyone"], as_of=AS_OF)
    assert (summary.sent, summary.failed) == (4, 0)
    eml = (project.outbox_dir / "everyone" / "once" / "C2.eml").read_text()
    assert "O5" in eml  # C2's latest order, read from PostgreSQL
