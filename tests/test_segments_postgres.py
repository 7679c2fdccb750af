"""Segments pushed down to the machine's real PostgreSQL agree with DuckDB over files.

The tiny shop (and the fresh shop of tests/test_segments_cli.py) is loaded into a fresh
schema of database ``test``; a project points ``data.url`` at it; every case of the
operator tables must select the same customers, alone and evaluated together."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import evaluate_segments
from clvflow.segments.members import member_ids
from tests import test_segments_cli as fresh
from tests.conftest import (
    AS_OF,
    BASE_CONFIG,
    POSTGRES_URL,
    TINY_SHOP,
    ProjectFactory,
    postgres_tables,
)
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


FRESH_DDL = {
    **DDL,
    "customers": """customer_id TEXT PRIMARY KEY, email TEXT, first_name TEXT, locale TEXT,
        tier TEXT, points INTEGER, wedding_date DATE, joined_at TIMESTAMP, vip BOOLEAN""",
    "orders": "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TIMESTAMP, total NUMERIC(12,2)",
    "products": "product_id TEXT PRIMARY KEY, name TEXT, category TEXT, price NUMERIC(12,2)",
}
FRESH_CSV = {
    "customers": fresh.CUSTOMERS,
    "orders": fresh.ORDERS,
    "order_items": fresh.ITEMS,
    "products": fresh.PRODUCTS,
}


@pytest.fixture(scope="module")
def shop_schema() -> Iterator[str]:
    tables = {t: pd.read_csv(TINY_SHOP / f"{t}.csv", dtype=str, keep_default_na=False) for t in DDL}
    yield from _loaded(DDL, tables)


@pytest.fixture(scope="module")
def fresh_schema() -> Iterator[str]:
    tables = {
        t: pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False)
        for t, csv in FRESH_CSV.items()
    }
    yield from _loaded(FRESH_DDL, tables)


def _loaded(ddl: dict[str, str], tables: dict[str, pd.DataFrame]) -> Iterator[str]:
    """The tables, typed by ``ddl``, in a fresh schema (dropped afterwards)."""
    rows = {t: tables[t].replace({"": None}).to_dict(orient="records") for t in ddl}
    with postgres_tables("shop", ddl, rows) as schema:
        yield schema


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


def test_postgres_agrees_on_the_fresh_shop(make_project: ProjectFactory, fresh_schema: str) -> None:
    """Every case of the fresh-shop table (tests/test_segments_cli.py), alone and together."""
    files = {
        f"segments/{name}.yaml": f"description: {name}\nwhere:\n  {condition}\n"
        for name, condition in fresh.REFERRED.items()
    }
    for name, (label, condition, _) in zip(fresh.NAMES, fresh.CASES, strict=True):
        files[f"segments/{name}.yaml"] = f"description: {label}\nwhere:\n  {condition}\n"
    project = Project.load(make_project(files, config=_pg_config(fresh_schema)))
    data = open_shop_data(project)
    try:
        assert data.dialect == "postgresql"
        catalog = SegmentCatalog.load(project.segments_dir)
        together = evaluate_segments(catalog, fresh.NAMES, data, fresh.AS_OF_TIME)
        for name, (label, condition, expected) in zip(fresh.NAMES, fresh.CASES, strict=True):
            compiled = compile_segment(catalog, name, data, fresh.AS_OF_TIME)
            assert member_ids(data, compiled) == expected, f"{label}: {condition}"
            assert together[name] == expected, f"{label} (together): {condition}"
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
    from clvflow.campaigns.run import run_campaign
    from tests.test_campaign_run import FILES

    project = Project.load(make_project(FILES, config=_pg_config(shop_schema)))
    summary = run_campaign(project, load_campaigns(project.prefect_file)["everyone"], as_of=AS_OF)
    assert (summary.sent, summary.failed) == (4, 0)
    eml = (project.outbox_dir / "everyone" / "once" / "C2.eml").read_text()
    assert "O5" in eml  # C2's latest order, read from PostgreSQL
