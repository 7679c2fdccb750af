"""CLV and retention on the tiny shop, every number counted by hand from its CSV files,
over DuckDB and over the same shop in PostgreSQL; and the segment engine's own
``historical_clv`` agrees with the report's."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from clvflow.data.sources import open_shop_data
from clvflow.errors import ConfigError
from clvflow.measurement.clv import clv_values, ltv_to_cac, shop_metrics
from clvflow.measurement.cohorts import cohort_counts, retention_matrix
from clvflow.measurement.settings import AcquisitionCost
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import member_ids
from tests.conftest import (
    AS_OF,
    BASE_CONFIG,
    POSTGRES_URL,
    TINY_SHOP,
    ProjectFactory,
    postgres_tables,
)

# Tiny shop orders by AS_OF (2026-11-23 12:00; O9 on 2026-12-01 is later):
#   C1: O1 2025-01-10 100, O2 2026-11-20 50        → 2 orders, 150
#   C2: O3 2026-06-01 30, O4 07-01 30, O5 08-01 40 → 3 orders, 100
#   C3: O6 2026-11-22 200                           → 1 order, 200
#   C4: O7 2026-02-01 80, O8 03-01 20               → 2 orders, 100
SINCE = dt.datetime(2026, 7, 1, 12, 0)  # the period is 145 days; the one before starts
# 2026-02-06 12:00: O3, O4 (C2) and O8 (C4) fall in it; O5 (C2), O2 (C1), O6 (C3) in this one

CHANNELS = "C1,paid\nC2,paid\nC3,organic\nC4,search\nC5,search\nC6,\n"


def _customers_with_channel() -> str:
    lines = (TINY_SHOP / "customers.csv").read_text().splitlines()
    channel = dict(line.split(",") for line in CHANNELS.splitlines())
    out = [lines[0] + ",acquisition_channel"]
    out += [f"{line},{channel[line.split(',')[0]]}" for line in lines[1:]]
    return "\n".join(out) + "\n"


ACQUISITION = (
    "measurement:\n  acquisition:\n    channel_column: acquisition_channel\n"
    "    cost_per_customer: {paid: 50, search: 25, tv: 90}\n"
)


def _check_metrics(project: Project) -> None:
    data = open_shop_data(project)
    try:
        m = shop_metrics(data, AS_OF, SINCE)
        clv = clv_values(data, AS_OF)
        shares, sizes = retention_matrix(cohort_counts(data, AS_OF), AS_OF)
    finally:
        data.close()
    assert (m.customers, m.buyers, m.repeat_buyers, m.orders) == (6, 4, 3, 8)
    assert m.revenue == pytest.approx(550.0)
    assert m.average_order_value == pytest.approx(550 / 8)
    assert m.purchase_frequency == pytest.approx(2.0)
    assert m.repeat_purchase_rate == pytest.approx(0.75)
    assert (m.period_buyers, m.period_orders, m.new_buyers) == (3, 3, 1)
    assert m.period_revenue == pytest.approx(290.0)
    assert m.period_average_order_value == pytest.approx(290 / 3)
    assert (m.prior_buyers, m.retained, m.retention_rate) == (2, 1, 0.5)  # C2 came back, C4 not
    assert sorted(clv.tolist()) == [100.0, 100.0, 150.0, 200.0]
    assert (m.mean_clv, m.median_clv) == (137.5, 125.0)
    # cohorts 2025-12 … 2026-11; C1's 2025-01 cohort is older than the last twelve months
    assert list(shares.index) == ["2025-12", *(f"2026-{k:02d}" for k in range(1, 12))]
    assert sizes.to_dict() == {**dict.fromkeys(shares.index, 0), "2026-02": 1, "2026-06": 1,
                               "2026-11": 1}  # fmt: skip
    feb = shares.loc["2026-02"].tolist()  # C4: months 0 and 1; observable up to month 9
    assert feb[:10] == [1.0, 1.0] + [0.0] * 8 and all(math.isnan(v) for v in feb[10:])
    jun = shares.loc["2026-06"].tolist()  # C2: months 0, 1 and 2; observable up to 5
    assert jun[:6] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0] and all(math.isnan(v) for v in jun[6:])
    nov = shares.loc["2026-11"].tolist()
    assert nov[0] == 1.0 and all(math.isnan(v) for v in nov[1:])
    assert shares.loc["2025-12"].isna().all()  # nobody started then


def test_metrics_by_hand_on_duckdb(make_project: ProjectFactory) -> None:
    _check_metrics(Project.load(make_project()))


def test_ltv_to_cac_per_channel(make_project: ProjectFactory) -> None:
    root = make_project(
        {"data/customers.csv": _customers_with_channel()}, config=BASE_CONFIG + ACQUISITION
    )
    project = Project.load(root)
    acquisition = project.config.measurement.acquisition
    assert acquisition is not None
    data = open_shop_data(project)
    try:
        frame = ltv_to_cac(data, AS_OF, acquisition, "clvflow.yaml")
    finally:
        data.close()
    rows = {r.channel: (r.customers, r.mean_clv, r.cac, r.ltv_cac) for r in frame.itertuples()}
    assert rows.keys() == {"paid", "search", "organic", "(none)"}
    assert rows["paid"] == (2, 125.0, 50.0, 2.5)  # (150 + 100) / 2 / 50
    assert rows["search"] == (2, 50.0, 25.0, 2.0)  # (100 + C5's 0) / 2 / 25
    assert rows["organic"][:2] == (1, 200.0) and math.isnan(rows["organic"][3])  # no cost
    assert rows["(none)"][:2] == (1, 0.0)


def test_a_missing_channel_column_names_the_key(make_project: ProjectFactory) -> None:
    project = Project.load(make_project(config=BASE_CONFIG + ACQUISITION))
    data = open_shop_data(project)
    acquisition = AcquisitionCost(cost_per_customer={"paid": 1.0})
    try:
        with pytest.raises(ConfigError) as info:
            ltv_to_cac(data, AS_OF, acquisition, "clvflow.yaml")
    finally:
        data.close()
    text_ = info.value.render()
    assert "measurement.acquisition.channel_column" in text_ and "acquisition_channel" in text_


@pytest.mark.parametrize("threshold", [100, 101, 150, 200, 201])
def test_historical_clv_is_the_segment_attribute(
    make_project: ProjectFactory, demo_data: Path, threshold: int
) -> None:
    """On the generated demo shop: the customers whose report CLV is at least T are exactly
    the members of a segment `historical_clv: {at_least: T}`."""
    import shutil

    root = make_project(
        {
            "segments/rich.yaml": f"description: d\nwhere:\n  historical_clv: {{at_least: {threshold}}}\n"
        }
    )
    shutil.copytree(demo_data, root / "data", dirs_exist_ok=True)
    project = Project.load(root)
    data = open_shop_data(project)
    try:
        compiled = compile_segment(SegmentCatalog.load(project.segments_dir), "rich", data, AS_OF)
        members = set(member_ids(data, compiled))
        frame = data.frame(
            "SELECT customer_id, SUM(total) AS clv FROM orders "
            f"WHERE placed_at <= TIMESTAMP '{AS_OF}' GROUP BY customer_id"
        )
        values = clv_values(data, AS_OF)
    finally:
        data.close()
    # an independent reading of the same rule with pandas over the raw CSV
    orders = pd.read_csv(
        demo_data / "orders.csv", parse_dates=["placed_at"], dtype={"customer_id": str}
    )
    spent = orders[orders["placed_at"] <= AS_OF].groupby("customer_id")["total"].sum()
    expected = set(spent[spent >= threshold - 1e-9].index)
    assert members == expected
    assert len(values) == len(spent) == len(frame)
    assert sorted(values.round(2).tolist()) == sorted(spent.round(2).tolist())


# -- the same shop in PostgreSQL ----------------------------------------------------------
DDL = {
    "customers": """customer_id TEXT PRIMARY KEY, email TEXT, first_name TEXT, locale TEXT,
        role TEXT, wedding_date DATE, loyalty_points INTEGER, vip_note TEXT,
        accepts_marketing BOOLEAN""",
    "orders": "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TIMESTAMP, total NUMERIC(12,2), currency TEXT",
}


@contextmanager
def postgres_shop(orders: pd.DataFrame | None = None) -> Iterator[str]:
    """The tiny shop's customers and orders (or ``orders``) in a fresh schema of ``test``."""
    frames = {
        "customers": pd.read_csv(TINY_SHOP / "customers.csv", dtype=str, keep_default_na=False),
        "orders": orders
        if orders is not None
        else pd.read_csv(TINY_SHOP / "orders.csv", dtype=str, keep_default_na=False),
    }
    rows = {t: frame.replace({"": None}).to_dict(orient="records") for t, frame in frames.items()}
    with postgres_tables("measure", DDL, rows) as schema:
        yield schema


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    with postgres_shop() as schema:
        yield schema


def pg_config(schema: str) -> str:
    head = BASE_CONFIG.split("data:")[0]
    return (
        f"{head}data:\n  url: {POSTGRES_URL}\n  customers: {schema}.customers\n"
        f"  orders: {schema}.orders\n  order_items: null\n  products: null\n"
        "ledger: sqlite:///.clvflow/ledger.db\n"
    )


@pytest.mark.postgres
def test_metrics_by_hand_on_postgres(make_project: ProjectFactory, pg_schema: str) -> None:
    project = Project.load(make_project(config=pg_config(pg_schema)))
    data = open_shop_data(project)
    assert data.dialect == "postgresql"
    data.close()
    _check_metrics(project)
