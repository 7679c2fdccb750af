"""Attribution over a hand-made ledger and order history: UTC sends against local orders,
across a daylight-saving change, per-campaign windows, last touch within a campaign."""

from __future__ import annotations

import datetime as dt

import pytest

from clvflow.data.sources import open_shop_data
from clvflow.errors import ConfigError
from clvflow.ledger.store import Ledger
from clvflow.measurement.attribution import attribute, rollup
from clvflow.measurement.sends import local_to_utc, read_sends
from clvflow.measurement.settings import MeasurementConfig, duration
from clvflow.project.config import load_config
from clvflow.project.layout import Project
from clvflow.reporting.report import attribution_windows, measure_campaigns
from tests.conftest import BASE_CONFIG, ProjectFactory
from tests.measurement_fixtures import (
    EXPECTED_CELLS,
    ORDERS_CSV,
    PREFECT_YAML,
    cells_as_dict,
    fill_ledger,
)
from tests.test_campaign_run import FILES

SINCE = dt.datetime(2026, 10, 1)
AS_OF = dt.datetime(2026, 11, 30, 12, 0)


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    root = make_project({**FILES, "prefect.yaml": PREFECT_YAML, "data/orders.csv": ORDERS_CSV})
    loaded = Project.load(root)
    fill_ledger(loaded.ledger_url)
    return loaded


def test_local_to_utc_follows_daylight_saving() -> None:
    tz = "Europe/Budapest"
    assert local_to_utc(dt.datetime(2026, 7, 1, 12), tz) == dt.datetime(2026, 7, 1, 10)
    assert local_to_utc(dt.datetime(2026, 12, 1, 12), tz) == dt.datetime(2026, 12, 1, 11)


def test_windows_come_from_the_spec_else_the_default(project: Project) -> None:
    windows = attribution_windows(project)
    assert windows == {"winter": dt.timedelta(days=5), "autumn": dt.timedelta(days=2)}


def test_every_cell_matches_the_hand_count(project: Project) -> None:
    measured = measure_campaigns(project, SINCE, AS_OF)
    assert cells_as_dict(measured.cells) == EXPECTED_CELLS
    # revenue_sq is the sum over recipients of (revenue per recipient)²
    winter = measured.cells[measured.cells["campaign"] == "winter"]
    assert sorted(winter["revenue_sq"].tolist()) == [0.0, 225.0, 625.0, 1600.0]


def test_the_period_bounds_which_sends_count(project: Project) -> None:
    # from 2026-11-01 local: the autumn send (October) is out
    measured = measure_campaigns(project, dt.datetime(2026, 11, 1), AS_OF)
    assert {k[0] for k in cells_as_dict(measured.cells)} == {"winter"}
    # up to 2026-11-19 10:30 local = 09:30 UTC: the second winter send (09:00 UTC planned
    # 08:59) is in; up to 09:58 local it is not
    inside = measure_campaigns(project, SINCE, dt.datetime(2026, 11, 19, 10, 30))
    outside = measure_campaigns(project, SINCE, dt.datetime(2026, 11, 19, 9, 58))
    assert ("winter", "2026-11-19", "treated", "a", "en") in cells_as_dict(inside.cells)
    assert ("winter", "2026-11-19", "treated", "a", "en") not in cells_as_dict(outside.cells)


def test_orders_after_as_of_are_not_known_yet(project: Project) -> None:
    # as of 2026-11-21 09:00 local, W2 (09:30 that day) has not been placed yet
    measured = measure_campaigns(project, SINCE, dt.datetime(2026, 11, 21, 9, 0))
    got = cells_as_dict(measured.cells)
    assert got[("winter", "2026-11-19", "treated", "a", "en")] == (1, 0, 0, 0.0)
    assert got[("winter", "2026-11-16", "treated", "a", "en")] == (1, 1, 1, 15.0)


def test_reading_times_naively_would_give_other_numbers(project: Project) -> None:
    """The same query with the shop in UTC (no conversion) counts W0 and loses W2 and A1:
    proof that the conversion matters for these rows."""
    ledger = Ledger(project.ledger_url)
    sends = read_sends(ledger, dt.datetime(2026, 1, 1))
    ledger.close()
    data = open_shop_data(project)
    try:
        windows = {"autumn": dt.timedelta(days=2)}
        naive = attribute(data, sends, windows, timezone="UTC", default_locale="en",
                          default_window=dt.timedelta(days=5))  # fmt: skip
    finally:
        data.close()
    got = cells_as_dict(naive)
    assert got[("winter", "2026-11-16", "treated", "a", "en")] == (1, 1, 2, 26.0)  # W0 + W1
    assert got[("autumn", "once", "treated", "", "ru")] == (1, 0, 0, 0.0)


def test_rollup_sums_cells(project: Project) -> None:
    cells = measure_campaigns(project, SINCE, AS_OF).cells
    totals = rollup(cells, ("campaign", "group"))
    by = {
        (r.campaign, r.group): (r.recipients, r.conversions, r.revenue) for r in totals.itertuples()
    }
    assert by == {
        ("autumn", "treated"): (1, 1, 70.0),
        ("winter", "holdout"): (1, 1, 25.0),
        ("winter", "treated"): (3, 2, 55.0),
    }


def test_no_sends_give_empty_cells(make_project: ProjectFactory) -> None:
    project = Project.load(make_project({**FILES, "prefect.yaml": PREFECT_YAML}))
    measured = measure_campaigns(project, SINCE, AS_OF)
    assert measured.cells.empty and measured.results == []


def test_measurement_config_is_strict(make_project: ProjectFactory) -> None:
    good = BASE_CONFIG + "measurement:\n  attribution_window: 48 hours\n  min_group_size: 50\n"
    config = load_config(make_project(config=good))
    assert config.measurement.window_for(None) == dt.timedelta(hours=48)
    assert config.measurement.min_group_size == 50
    for bad, key in [
        ("measurement:\n  attribution_window: 5 fortnights\n", "attribution_window"),
        ("measurement:\n  attribution_window: 0 days\n", "attribution_window"),
        ("measurement:\n  attribtion_window: 5 days\n", "attribtion_window"),
        ("measurement:\n  acquisition: {cost_per_customer: {paid: -3}}\n", "paid"),
        ("measurement:\n  acquisition: {channel_column: ch}\n", "cost_per_customer"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config(make_project(config=BASE_CONFIG + bad))
        assert key in info.value.render() and "clvflow.yaml:" in info.value.render()


def test_duration_parses_hours_days_weeks() -> None:
    assert duration("5 days") == dt.timedelta(days=5)
    assert duration("1 week") == dt.timedelta(days=7)
    assert duration("36 hours") == dt.timedelta(hours=36)
    assert MeasurementConfig().window_for(None) == dt.timedelta(days=5)


@pytest.mark.postgres
def test_the_same_cells_when_the_shop_is_in_postgres(make_project: ProjectFactory) -> None:
    import io

    import pandas as pd

    from tests.test_measurement_clv import pg_config, postgres_shop

    orders = pd.read_csv(io.StringIO(ORDERS_CSV), dtype=str, keep_default_na=False)
    with postgres_shop(orders) as schema:
        root = make_project({**FILES, "prefect.yaml": PREFECT_YAML}, config=pg_config(schema))
        project = Project.load(root)
        fill_ledger(project.ledger_url)
        measured = measure_campaigns(project, SINCE, AS_OF)
    assert cells_as_dict(measured.cells) == EXPECTED_CELLS


@pytest.mark.postgres
def test_the_same_cells_with_the_ledger_in_postgres(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import POSTGRES_URL

    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as con:
        con.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        monkeypatch.setenv("CLVFLOW_LEDGER_URL", f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
        root = make_project({**FILES, "prefect.yaml": PREFECT_YAML, "data/orders.csv": ORDERS_CSV})
        project = Project.load(root)
        assert project.ledger_url.startswith("postgresql")
        fill_ledger(project.ledger_url)
        measured = measure_campaigns(project, SINCE, AS_OF)
        assert cells_as_dict(measured.cells) == EXPECTED_CELLS
    finally:
        with admin.begin() as con:
            con.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
