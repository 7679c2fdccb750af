"""The report flow (deployment ``daily-report``): the measurement report as Prefect artifacts.

Three tasks (campaign measurement, customer metrics, charts) over the same functions as
``clvflow report``; the flow publishes tables, markdown with the charts embedded, the charts
as image artifacts, and writes the HTML report to the project's ``reports/`` folder.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from clvflow.measurement.charts import prediction_check
from clvflow.orchestration.artifacts import artifact_key
from clvflow.project.clock import local_now
from clvflow.project.layout import Project
from clvflow.reporting.html import data_uri, write_report
from clvflow.reporting.markdown import campaigns_markdown, customers_markdown
from clvflow.reporting.predictions import (
    check_markdown,
    measure_predictions,
    repeat_rows,
)
from clvflow.reporting.report import (
    CLV_CHART,
    COHORT_CHART,
    CampaignMeasurement,
    Report,
    ShopMeasurement,
    draw_charts,
    measure_campaigns,
    measure_shop,
)
from clvflow.reporting.tables import (
    attribution_rows,
    engagement_rows,
    experiment_rows,
    journey_sections,
    ltv_cac_rows,
    shop_rows,
)
from clvflow.segments.times import resolve_time
from clvflow.web.console import links

KEY = "clv-report"


@task(name="measure campaigns", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def campaigns_task(project: Project, since: dt.datetime, as_of: dt.datetime) -> CampaignMeasurement:
    return measure_campaigns(project, since, as_of)


@task(name="measure customers", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def customers_task(project: Project, since: dt.datetime, as_of: dt.datetime) -> ShopMeasurement:
    return measure_shop(project, since, as_of)


@task(name="draw charts", cache_policy=NO_CACHE)
def charts_task(shop: ShopMeasurement, currency: str) -> dict[str, bytes]:
    return draw_charts(shop, currency)


@task(name="check predictions", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def predictions_task(project: Project, as_of: dt.datetime) -> dict[str, Any]:
    return measure_predictions(project, as_of)


@flow(name="report", log_prints=False)
def report_flow(
    project: str = ".",
    since: str = "6 months ago",
    as_of: dt.datetime | None = None,
    out: str | None = None,
) -> dict[str, Any]:
    """Measure every campaign sent since ``since`` against its holdout, and the shop's CLV
    and retention; publish it all as artifacts."""
    logger = get_run_logger()
    loaded = Project.load(project)
    cfg = loaded.config
    until = (as_of or local_now(cfg.shop.timezone)).replace(tzinfo=None)
    start = resolve_time(since, until)
    campaigns = campaigns_task(loaded, start, until)
    customers = customers_task(loaded, start, until)
    charts = charts_task(customers, cfg.shop.currency)
    predictions = predictions_task(loaded, until)
    report = Report(
        shop=cfg.shop.name,
        currency=cfg.shop.currency,
        timezone=cfg.shop.timezone,
        campaigns=campaigns,
        customers=customers,
        charts=charts,
        predictions=predictions,
    )
    path = write_report(report, Path(out) if out else loaded.root / "reports")
    publish(report, path, cfg.web_base_url)
    publish_predictions(predictions)
    verdicts = {r.campaign: r.vs_holdout.verdict for r in campaigns.results if r.vs_holdout}
    logger.info("report %s – %s: %s; written to %s", start, until, verdicts or "no holdouts", path)
    return {
        "since": start.isoformat(),
        "as_of": until.isoformat(),
        "path": str(path),
        "verdicts": verdicts,
    }


def publish(report: Report, path: Path, base_url: str) -> None:
    period = f"{report.since:%Y-%m-%d} – {report.as_of:%Y-%m-%d}"
    create_markdown_artifact(
        key=f"{KEY}-campaigns",
        markdown=campaigns_markdown(report),
        description=f"Campaign effect against holdouts, {period}",
    )
    create_markdown_artifact(
        key=f"{KEY}-customers",
        markdown=customers_markdown(report),
        description="CLV and retention, with the cohort heatmap and the CLV distribution",
    )
    tables = {
        "experiments": (experiment_rows(report), "Holdout and A/B tests: uplift with 95% CI"),
        "attribution": (
            attribution_rows(report),
            "Conversions and revenue per campaign, group, variant and locale",
        ),
        "engagement": (engagement_rows(report), "SendGrid events per campaign"),
        "metrics": (shop_rows(report), "CLV, AOV, purchase frequency, repeat and retention"),
        "ltv-cac": (ltv_cac_rows(report), "LTV:CAC per acquisition channel"),
    }
    for section in journey_sections(report):
        tables[f"journey-{artifact_key(section.journey)}"] = (
            section.steps,
            f"{section.journey}: per step recipients, conversions and revenue. {section.uplift}",
        )
    for name, (rows, description) in tables.items():
        if rows:
            create_table_artifact(key=f"{KEY}-{name}", table=rows, description=description)
    create_image_artifact(
        image_url=data_uri(report.charts[COHORT_CHART]),
        key=f"{KEY}-cohort-retention",
        description="Monthly cohort retention heatmap",
    )
    create_image_artifact(
        image_url=data_uri(report.charts[CLV_CHART]),
        key=f"{KEY}-clv-distribution",
        description="Distribution of historical CLV",
    )
    create_link_artifact(
        key=f"{KEY}-html",
        link=links.absolute(base_url, links.report()),
        link_text=f"The report in the console, {period} (HTML file: {path.name} in reports/)",
    )


def publish_predictions(check: dict[str, Any]) -> None:
    """The prediction check: markdown, the table by past repeat purchases, the chart."""
    if "problem" in check:
        create_markdown_artifact(
            key=f"{KEY}-predictions",
            markdown=f"## Predicted CLV\n\nNo check: {check['problem']}\n",
            description="How well the models predicted the past",
        )
        return
    create_markdown_artifact(
        key=f"{KEY}-predictions",
        markdown=check_markdown(check),
        description="How well the models predicted the past",
    )
    create_table_artifact(
        key=f"{KEY}-prediction-check",
        table=repeat_rows(check),
        description="Mean purchases in the holdout by past repeat purchases: actual, model, naive",
    )
    create_image_artifact(
        image_url=data_uri(prediction_check(check)),
        key=f"{KEY}-prediction-chart",
        description="Predicted against actual purchases by past repeat purchases",
    )
