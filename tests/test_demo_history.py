"""The demo shop's simulated past: recorded as real runs record (holdouts by the real rule,
dated in the past, every row of a run), deterministic, written once; its customers'
answers fall where a treated customer can answer; and ``clvflow report`` finds every true
effect of ``demo/effects.py`` again on the shop ``clvflow demo`` ships (its size and seed).
No Prefect: the past is generated and measured directly; a real SQLite ledger."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import delete, func, select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.holdouts import resolved_holdout
from clvflow.cli.main import main
from clvflow.demo.effects import TRUE_EFFECTS
from clvflow.demo.history import History
from clvflow.demo.past_rows import RUN_PREFIX
from clvflow.demo.record import record_history
from clvflow.demo.run import (
    CUSTOMERS,
    MANIFEST,
    SEED,
    ensure_demo_data,
    generate_demo_data,
    past_period,
    shop_size,
    simulate_past,
)
from clvflow.demo.shop import generate_shop
from clvflow.errors import ConfigError
from clvflow.journeys.catalog import load_journeys
from clvflow.ledger.schema import journey_entries, messages, runs
from clvflow.ledger.store import Ledger
from clvflow.measurement.journeys import uplift_window
from clvflow.planning.holdout import in_holdout
from clvflow.project.layout import Project
from clvflow.reporting.report import measure_campaigns
from tests.conftest import AS_OF, ROOT, ledger_rows

REFERENCE = AS_OF.date()
SMALL = 4000  # customers: enough for every campaign to reach some, quick to generate


def _copy_project(root: Path) -> Project:
    root.mkdir(parents=True)
    for name in ("segments", "templates", "flows"):
        shutil.copytree(ROOT / name, root / name)
    for name in ("clvflow.yaml", "prefect.yaml"):
        shutil.copy(ROOT / name, root / name)
    return Project.load(root)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, History]:
    project = _copy_project(tmp_path_factory.mktemp("past") / "shop")
    return project, generate_demo_data(project, reference=REFERENCE, customers=SMALL)


def _utc(local: pd.Series) -> pd.Series:
    aware = local.dt.tz_localize("Europe/Budapest", ambiguous=True, nonexistent="shift_forward")
    return aware.dt.tz_convert("UTC").dt.tz_localize(None)


def test_holdouts_follow_the_rule_real_runs_use(small: tuple[Project, History]) -> None:
    project, _ = small
    campaigns = load_campaigns(project.prefect_file)
    for name, campaign in campaigns.items():
        percent = resolved_holdout(project, campaign.spec)
        rows = ledger_rows(
            project,
            select(messages.c.customer_id, messages.c.status).where(messages.c.campaign == name),
        )
        assert rows, name
        for customer, status in rows:
            assert (status == "holdout") == in_holdout(name, customer, percent), (name, customer)
    for name, journey in load_journeys(project.prefect_file).items():
        percent = resolved_holdout(project, journey.spec)
        per_order = journey.spec.reentry == "per_order"
        rows = ledger_rows(
            project,
            select(
                journey_entries.c.customer_id,
                journey_entries.c.occurrence,
                journey_entries.c.holdout,
            ).where(journey_entries.c.journey == name),
        )
        assert rows, name
        for customer, occurrence, held in rows:
            rule = in_holdout(name, customer, percent, occurrence if per_order else None)
            assert bool(held) == rule, (name, customer, occurrence)
        held_steps = ledger_rows(
            project,
            select(func.count())
            .select_from(
                messages.join(
                    journey_entries,
                    (journey_entries.c.journey == messages.c.campaign)
                    & (journey_entries.c.customer_id == messages.c.customer_id)
                    & messages.c.occurrence.startswith(journey_entries.c.occurrence + "/"),
                )
            )
            .where(journey_entries.c.journey == name, journey_entries.c.holdout == 1),
        )
        assert held_steps == [(0,)], name  # the holdout gets no step


def test_the_past_is_dated_in_the_past_and_every_row_has_its_run(
    small: tuple[Project, History],
) -> None:
    project, _ = small
    period = past_period(REFERENCE)
    start, until = (_utc(pd.Series([t])).iloc[0] for t in (period.start, period.until))
    rows = ledger_rows(
        project,
        select(messages.c.planned_at, messages.c.finished_at, messages.c.status).where(
            messages.c.run_id.startswith(RUN_PREFIX)
        ),
    )
    frame = pd.DataFrame(rows, columns=["planned", "finished", "status"])
    assert len(frame) > 10_000
    assert frame["planned"].min() >= start and frame["planned"].max() < until
    sent = frame[frame["status"] == "sent"]
    assert (sent["finished"] >= sent["planned"]).all()
    assert frame.loc[frame["status"] == "holdout", "finished"].isna().all()
    orphans = ledger_rows(
        project,
        select(func.count()).where(
            messages.c.run_id.startswith(RUN_PREFIX),
            ~messages.c.run_id.in_(select(runs.c.run_id)),
        ),
    )
    assert orphans == [(0,)]


def test_answers_fall_in_a_treated_window_before_the_data_ends(
    small: tuple[Project, History],
) -> None:
    project, history = small
    answers = history.orders
    assert len(answers) > 50
    assert answers["placed_at"].max() < pd.Timestamp(REFERENCE)
    messages_frame = history.table("messages")
    sent = messages_frame[messages_frame["status"] == "sent"]
    entries = history.table("entries")
    windows = []
    for name in load_campaigns(project.prefect_file):
        mine = sent[sent["campaign"] == name]
        days = dt.timedelta(days=5)
        windows.append(mine.assign(start=mine["finished_at"], end=mine["finished_at"] + days))
    for name, journey in load_journeys(project.prefect_file).items():
        mine = entries[(entries["journey"] == name) & (entries["holdout"] == 0)]
        window, _ = uplift_window(journey.spec)
        windows.append(mine.assign(start=mine["entered_at"], end=mine["entered_at"] + window))
    treated = pd.concat(windows)[["customer_id", "start", "end"]]
    joined = answers.merge(treated, on="customer_id")
    inside = joined[
        (joined["placed_at"] > joined["start"]) & (joined["placed_at"] <= joined["end"])
    ]
    assert set(inside["order_id"]) == set(answers["order_id"])
    data = pd.read_csv(project.root / "data" / "orders.csv", dtype=str)
    assert set(answers["order_id"]) <= set(data["order_id"])
    assert data["order_id"].is_unique


def test_the_past_is_deterministic_and_written_once(small: tuple[Project, History]) -> None:
    project, history = small
    with tempfile.TemporaryDirectory() as scratch:
        generate_shop(Path(scratch), reference=REFERENCE, seed=SEED, size=shop_size(SMALL))
        again = simulate_past(project, Path(scratch), REFERENCE, SEED)
    for name in ("messages", "entries", "skips", "codes"):
        pd.testing.assert_frame_equal(history.table(name), again.table(name))
    pd.testing.assert_frame_equal(history.orders, again.orders)
    ledger = Ledger(project.ledger_url)
    try:
        before = ledger_rows(project, select(func.count()).select_from(messages))
        record_history(ledger, again, "Europe/Budapest")  # the same rows: nothing new
        assert ledger_rows(project, select(func.count()).select_from(messages)) == before
        with ledger.engine.begin() as con:  # a ledger that lost the past gets it back
            for table in (messages, journey_entries, runs):
                con.execute(delete(table))
    finally:
        ledger.close()
    reference, has_past = ensure_demo_data(project, fresh=False)
    assert (reference, has_past) == (REFERENCE, True)
    assert ledger_rows(project, select(func.count()).select_from(messages)) == before


def test_a_new_shop_refuses_a_ledger_with_another_shops_past(
    small: tuple[Project, History],
) -> None:
    project, _ = small
    later = REFERENCE + dt.timedelta(days=1)
    with pytest.raises(ConfigError, match="past of another demo shop") as raised:
        ensure_demo_data(project, fresh=True, customers=SMALL, reference=later)
    assert raised.value.key == "ledger" and "make clean" in str(raised.value.hint)


def test_the_manifest_holds_the_true_effects(small: tuple[Project, History]) -> None:
    project, history = small
    manifest = json.loads((project.root / "data" / MANIFEST).read_text())
    effects = manifest["history"]["true_effects"]
    assert {name: e["uplift_pp"] for name, e in effects.items()} == {
        name: round(100 * e.uplift, 3) for name, e in TRUE_EFFECTS.items()
    }
    assert effects == json.loads(json.dumps(history.effects))
    assert all(e["treated"] > 0 and e["holdout"] > 0 for e in effects.values())


@pytest.mark.slow
def test_the_report_finds_every_true_effect_in_the_shipped_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo as shipped (its size and seed; the past alone, without the day's runs):
    each 95 % interval holds the true effect, and excludes 0 when the effect is not 0."""
    project = _copy_project(tmp_path / "shop")
    generate_demo_data(project, reference=REFERENCE, customers=CUSTOMERS)
    until = dt.datetime.combine(REFERENCE, dt.time(9))
    measured = measure_campaigns(project, until - dt.timedelta(days=183), until)
    found = {r.campaign: r.vs_holdout for r in measured.results}
    found |= {j.journey: j.vs_holdout for j in measured.journeys}
    assert set(found) == set(TRUE_EFFECTS)
    for name, effect in TRUE_EFFECTS.items():
        comparison = found[name]
        assert comparison is not None, name
        interval = comparison.rate_uplift
        assert interval.low <= effect.uplift <= interval.high, (name, interval)
        if effect.uplift:
            assert interval.low > 0 and comparison.verdict == "uplift", (name, interval)
        else:
            assert comparison.verdict == "no_difference", (name, comparison.statement)
    args = ["--project", str(project.root), "--as-of", f"{until:%Y-%m-%d %H:%M}"]
    assert main(["report", *args, "--csv", str(tmp_path / "detail.csv")]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in TRUE_EFFECTS)
    assert out.count("Conversion is higher for treated than for holdout") == 3
    detail = pd.read_csv(tmp_path / "detail.csv", dtype=str)
    assert set(detail["campaign"]) == set(TRUE_EFFECTS)  # journeys' step messages too
