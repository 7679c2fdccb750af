"""Assemble the measurement report: campaigns (attribution, holdout and A/B statistics,
engagement) and journeys (per step, and against their holdout) since a moment, the shop's
CLV and retention, and the two charts.

A journey's step messages are ledger messages whose campaign is the journey's name: they
are measured in the journey's own section (:mod:`clvflow.measurement.journeys`) and left
out of the campaigns' tables, where they would show as a campaign without a holdout.

Three stages, so the report flow can run each as a task: :func:`measure_campaigns`,
:func:`measure_shop`, :func:`draw_charts`; :func:`build_report` chains them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.holdouts import resolved_holdout
from clvflow.data.sources import open_shop_data
from clvflow.journeys.catalog import Journey, load_journeys
from clvflow.ledger.store import Ledger
from clvflow.measurement.attribution import attribute
from clvflow.measurement.clv import ShopMetrics, clv_values, ltv_to_cac, shop_metrics
from clvflow.measurement.cohorts import cohort_counts, retention_matrix
from clvflow.measurement.experiments import CampaignResult, campaign_results
from clvflow.measurement.journeys import JourneyResult, measure_journey, read_entries, read_skips
from clvflow.measurement.sends import engagement_counts, local_to_utc, read_sends
from clvflow.measurement.settings import duration
from clvflow.project.layout import Project
from clvflow.reporting.predictions import measure_predictions

COHORT_CHART = "cohort_retention.png"
CLV_CHART = "clv_distribution.png"


@dataclass
class CampaignMeasurement:
    since: dt.datetime
    as_of: dt.datetime
    windows: dict[str, dt.timedelta]
    default_window: dt.timedelta
    cells: pd.DataFrame  # attribution cells (see measurement.attribution.attribute)
    results: list[CampaignResult]
    engagement: pd.DataFrame
    journeys: list[JourneyResult] = field(default_factory=list)  # in prefect.yaml's order


@dataclass
class ShopMeasurement:
    metrics: ShopMetrics
    ltv_cac: pd.DataFrame | None
    cohort_shares: pd.DataFrame
    cohort_sizes: pd.Series
    clv: pd.Series


@dataclass
class Report:
    shop: str
    currency: str
    timezone: str
    campaigns: CampaignMeasurement
    customers: ShopMeasurement
    charts: dict[str, bytes] = field(default_factory=dict)
    # the prediction check (clvflow.reporting.predictions.measure_predictions); empty: none
    predictions: dict[str, Any] = field(default_factory=dict)

    @property
    def since(self) -> dt.datetime:
        return self.campaigns.since

    @property
    def as_of(self) -> dt.datetime:
        return self.campaigns.as_of

    @property
    def journeys(self) -> list[JourneyResult]:
        return self.campaigns.journeys


def attribution_windows(project: Project) -> dict[str, dt.timedelta]:
    """Each campaign's window: its spec's ``attribution_days`` if set, else the default."""
    settings = project.config.measurement
    if not project.prefect_file.is_file():
        return {}
    campaigns = load_campaigns(project.prefect_file)
    return {name: settings.window_for(c.spec) for name, c in campaigns.items()}


def project_journeys(project: Project) -> list[Journey]:
    """The journeys of prefect.yaml (none without the file)."""
    if not project.prefect_file.is_file():
        return []
    return list(load_journeys(project.prefect_file).values())


def measure_campaigns(
    project: Project, since: dt.datetime, as_of: dt.datetime
) -> CampaignMeasurement:
    """Attribution and statistics for every message sent or held out in ``[since, as_of)``
    (shop-local times): per campaign, and per journey (its entries in the period)."""
    cfg = project.config
    tz = cfg.shop.timezone
    windows = attribution_windows(project)
    default = duration(cfg.measurement.attribution_window)
    journeys = project_journeys(project)
    names = [j.name for j in journeys]
    holdouts = {j.name: resolved_holdout(project, j.spec) for j in journeys}
    ledger = Ledger(project.ledger_url)
    try:
        since_utc, until_utc = local_to_utc(since, tz), local_to_utc(as_of, tz)
        sends = read_sends(ledger, since_utc, until_utc)
        engagement = engagement_counts(ledger, since_utc)
        journey_rows = {
            j.name: (
                read_entries(ledger, j.name, since_utc, until_utc),
                read_skips(ledger, j.name, [s.name for s in j.spec.steps], since_utc, until_utc),
            )
            for j in journeys
        }
    finally:
        ledger.close()
    engagement = engagement[~engagement.index.isin(names)]
    campaign_sends = sends[~sends["campaign"].isin(names)]
    data = open_shop_data(project)
    try:
        cells = attribute(
            data, campaign_sends, windows, timezone=tz, default_locale=cfg.shop.default_locale,
            default_window=default, until=as_of,
        )  # fmt: skip
        measured = [
            measure_journey(
                data,
                j,
                sends,
                *journey_rows[j.name],
                timezone=tz,
                default_locale=cfg.shop.default_locale,
                until=as_of,
                min_group_size=cfg.measurement.min_group_size,
                holdout_percent=holdouts[j.name],
            )
            for j in journeys
        ]
    finally:
        data.close()
    results = campaign_results(cells, min_group_size=cfg.measurement.min_group_size)
    return CampaignMeasurement(
        since, as_of, windows, default, cells, results, engagement, journeys=measured
    )


def measure_shop(project: Project, since: dt.datetime, as_of: dt.datetime) -> ShopMeasurement:
    cfg = project.config
    data = open_shop_data(project)
    try:
        metrics = shop_metrics(data, as_of, since)
        acquisition = cfg.measurement.acquisition
        ltv = (
            None
            if acquisition is None
            else ltv_to_cac(data, as_of, acquisition, str(project.root / "clvflow.yaml"))
        )
        shares, sizes = retention_matrix(cohort_counts(data, as_of), as_of)
        clv = clv_values(data, as_of)
    finally:
        data.close()
    return ShopMeasurement(metrics, ltv, shares, sizes, clv)


def draw_charts(shop: ShopMeasurement, currency: str) -> dict[str, bytes]:
    from clvflow.measurement.charts import clv_histogram, cohort_heatmap

    return {
        COHORT_CHART: cohort_heatmap(shop.cohort_shares, shop.cohort_sizes),
        CLV_CHART: clv_histogram(shop.clv, currency),
    }


def build_report(project: Project, since: dt.datetime, as_of: dt.datetime) -> Report:
    cfg = project.config
    customers = measure_shop(project, since, as_of)
    return Report(
        shop=cfg.shop.name,
        currency=cfg.shop.currency,
        timezone=cfg.shop.timezone,
        campaigns=measure_campaigns(project, since, as_of),
        customers=customers,
        charts=draw_charts(customers, cfg.shop.currency),
        predictions=measure_predictions(project, as_of),
    )
