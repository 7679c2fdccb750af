"""On the demo shop with a simulated response: a real campaign run (50% holdout, two
variants) fills the ledger; orders are then simulated after the sends at known rates, and
the report must find the effect that was put in, and find none in A/A tests.

The simulation is independent of the code under test: it draws, for every ledger row, a
Bernoulli order at the rate of the row's group, placed uniformly inside the 5-day window
(local shop time, from the UTC send time), with a total drawn uniformly from 20…180
(mean 100); plus orders outside every window (before the send, or 6–10 days after) that
must not count. The true uplift is therefore the difference of the chosen rates.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.measurement.sends import read_sends
from clvflow.measurement.stats import wilson
from clvflow.project.layout import Project
from clvflow.reporting.report import build_report, measure_campaigns
from tests.conftest import AS_OF

pytestmark = pytest.mark.slow

CAMPAIGN = """
  - name: measured
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: measured
      spec:
        segment: everybody
        template: vip_thanks
        holdout_percent: 50
        variants:
          - {name: a, template: vip_thanks}
          - {name: b, template: vip_thanks}
"""
SENT_UTC = dt.datetime(2026, 11, 23, 11, 0)  # = AS_OF (12:00 in Budapest, UTC+1)
SINCE = dt.datetime(2026, 11, 1)
UNTIL = dt.datetime(2026, 12, 15)
WINDOW = dt.timedelta(days=5)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Iterator[Project]:
    """The demo project, one real run of the `measured` campaign, sends dated AS_OF."""
    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("simulated") / "demo"
    root.mkdir()
    for name in ("segments", "templates", "flows"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "clvflow.yaml", root / "clvflow.yaml")
    text = (ROOT / "prefect.yaml").read_text()
    (root / "prefect.yaml").write_text(text.rstrip() + "\n" + CAMPAIGN)
    (root / "segments" / "everybody.yaml").write_text(
        "description: every customer\nwhere:\n  customer_id: {is_set: true}\n"
    )
    shutil.copytree(demo_data, root / "data")
    project = Project.load(root)
    summary = run_campaign(project, load_campaigns(project.prefect_file)["measured"], as_of=AS_OF)
    assert summary.sent > 400 and summary.holdout > 400
    ledger = Ledger(project.ledger_url)
    with ledger.engine.begin() as con:  # the run happened at AS_OF, not at the test's clock
        con.execute(
            update(messages).values(
                planned_at=SENT_UTC - dt.timedelta(minutes=1),
                finished_at=SENT_UTC,
            )
        )
    ledger.close()
    (root / "data" / "orders.base.csv").write_bytes((root / "data" / "orders.csv").read_bytes())
    yield project


def _rows(project: Project) -> pd.DataFrame:
    ledger = Ledger(project.ledger_url)
    try:
        return read_sends(ledger, dt.datetime(2026, 1, 1))
    finally:
        ledger.close()


def simulate(project: Project, seed: int, rates: dict[str, float]) -> dict[str, float]:
    """Write orders.csv = the demo shop's orders + simulated ones. ``rates`` maps 'holdout',
    'a' and 'b' to conversion rates. Returns the expected revenue per recipient by key."""
    rng = np.random.default_rng(seed)
    rows = _rows(project)
    key = np.where(rows["group"] == "holdout", "holdout", rows["variant"].astype(str))
    p = np.array([rates[k] for k in key])
    n = len(rows)
    buys = rng.random(n) < p
    local = ZoneInfo("Europe/Budapest")
    start = pd.Timestamp(SENT_UTC.replace(tzinfo=dt.UTC).astimezone(local).replace(tzinfo=None))
    # inside the window: 1 minute … window − 1 minute after the send
    inside = rng.uniform(60, WINDOW.total_seconds() - 60, n)
    outside = np.where(
        rng.random(n) < 0.5,
        -rng.uniform(60, 20 * 86400, n),  # before the send
        rng.uniform(6 * 86400, 10 * 86400, n),  # after the window
    )
    noise = rng.random(n) < 0.25
    totals = rng.integers(20, 181, n).astype(float)
    frames = []
    for mask, offsets, tag in ((buys, inside, "S"), (noise, outside, "N")):
        picked = np.flatnonzero(mask)
        frames.append(
            pd.DataFrame(
                {
                    "order_id": [f"{tag}{seed}-{i}" for i in picked],
                    "customer_id": rows["customer_id"].to_numpy()[picked],
                    "placed_at": (start + pd.to_timedelta(offsets[picked], unit="s")).strftime(
                        "%Y-%m-%d %H:%M:%S"
                    ),
                    "total": totals[picked],
                    "currency": "EUR",
                }
            )
        )
    base = pd.read_csv(project.root / "data" / "orders.base.csv", dtype=str)
    pd.concat([base, *frames]).to_csv(project.root / "data" / "orders.csv", index=False)
    return {k: 100.0 * v for k, v in rates.items()}  # E[total] = 100


def test_the_report_finds_the_simulated_uplift(shop: Project) -> None:
    rates = {"holdout": 0.15, "a": 0.30, "b": 0.30}
    expected_rpr = simulate(shop, seed=1, rates=rates)
    report = build_report(shop, SINCE, UNTIL)
    (result,) = [r for r in report.campaigns.results if r.campaign == "measured"]
    assert result.vs_holdout is not None
    uplift = result.vs_holdout.rate_uplift
    assert uplift.low <= 0.30 - 0.15 <= uplift.high
    assert uplift.low > 0 and result.vs_holdout.verdict == "uplift"
    revenue = result.vs_holdout.revenue_uplift
    assert revenue.low <= expected_rpr["a"] - expected_rpr["holdout"] <= revenue.high
    # each group's own rate is right too: orders outside the windows were not counted
    for group, rate in ((result.treated, 0.30), (result.holdout, 0.15)):
        low, high = wilson(group.conversions, group.recipients)
        assert low <= rate <= high
    # the A/A pair of variants: no difference claimed
    (b,) = [v for v in result.variants if v.variant == "b"]
    assert (
        b.vs_baseline is not None
        and b.vs_baseline.rate_uplift.low <= 0 <= b.vs_baseline.rate_uplift.high
    )
    from clvflow.reporting.html import render_html

    page = render_html(report)
    assert "Conversion is higher for treated than for holdout" in page


def test_a_a_tests_are_rarely_significant_over_a_batch_of_seeds(shop: Project) -> None:
    seeds = range(100, 140)
    significant = 0
    comparisons = 0
    for seed in seeds:
        simulate(shop, seed, {"holdout": 0.2, "a": 0.2, "b": 0.2})
        measured = measure_campaigns(shop, SINCE, UNTIL)
        (result,) = [r for r in measured.results if r.campaign == "measured"]
        checks = [result.vs_holdout, *(v.vs_baseline for v in result.variants)]
        for comparison in checks:
            if comparison is None:
                continue
            assert comparison.verdict != "too_small"
            comparisons += 1
            significant += comparison.verdict in ("uplift", "drop")
    assert comparisons == 2 * len(seeds)
    print(f"A/A: {significant} of {comparisons} comparisons significant")
    assert significant / comparisons <= 0.075
