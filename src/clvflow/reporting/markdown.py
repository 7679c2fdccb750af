"""The report as markdown (the Prefect UI's markdown artifacts), charts as ``data:`` URIs."""

from __future__ import annotations

from clvflow.reporting.html import data_uri
from clvflow.reporting.report import CLV_CHART, COHORT_CHART, Report
from clvflow.reporting.tables import (
    Row,
    campaign_totals,
    engagement_rows,
    experiment_rows,
    journey_sections,
    ltv_cac_rows,
    shop_rows,
    statements,
)


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[Row]) -> str:
    if not rows:
        return "_Nothing to show._\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(_cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def campaigns_markdown(report: Report) -> str:
    lines = [
        f"# Campaign effect, {report.since:%Y-%m-%d} – {report.as_of:%Y-%m-%d}",
        "",
        "## Verdicts",
        "",
    ]
    lines += [f"- **{c}**: {_cell(text)}" for c, text in statements(report)] or [
        "No campaign messages in this period."
    ]
    lines += ["", "## Holdout and A/B tests", "", markdown_table(experiment_rows(report))]
    lines += ["## Attributed revenue", "", markdown_table(campaign_totals(report))]
    lines += ["## Engagement", "", markdown_table(engagement_rows(report))]
    journeys = journeys_markdown(report)
    return "\n".join(lines) + ("\n" + journeys if journeys else "")


def journeys_markdown(report: Report) -> str:
    """A section per journey (empty when the project has none)."""
    sections = journey_sections(report)
    if not sections:
        return ""
    lines = ["## Journeys", ""]
    for section in sections:
        lines += [f"### {_cell(section.journey)}", "", _cell(section.note), ""]
        lines += [markdown_table(section.steps), _cell(section.uplift), ""]
    return "\n".join(lines)


def customers_markdown(report: Report, *, images: bool = True) -> str:
    lines = [f"# Customers as of {report.as_of:%Y-%m-%d}", "", markdown_table(shop_rows(report))]
    ltv = ltv_cac_rows(report)
    if ltv:
        lines += ["## LTV:CAC by acquisition channel", "", markdown_table(ltv)]
    if images:
        lines += [
            "## Monthly cohort retention",
            "",
            f"![Monthly cohort retention]({data_uri(report.charts[COHORT_CHART])})",
            "",
            "## CLV distribution",
            "",
            f"![CLV distribution]({data_uri(report.charts[CLV_CHART])})",
            "",
        ]
    return "\n".join(lines)
