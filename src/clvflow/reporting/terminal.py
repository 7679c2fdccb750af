"""The report on the terminal: a section per screen (campaigns against their holdout,
journeys against theirs, each journey's steps, the breakdown by variant and locale), from
the same rows as the HTML file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from clvflow.reporting.predictions import check_headline, repeat_rows
from clvflow.reporting.report import Report
from clvflow.reporting.tables import (
    Row,
    attribution_rows,
    detail_rows,
    experiment_rows,
    journey_statements,
    journey_step_rows,
    journey_uplift_rows,
    statements,
)

CAMPAIGN_COLUMNS = (
    "campaign", "group", "recipients", "conversions", "conversion rate", "uplift (95% CI)",
    "revenue uplift per recipient (95% CI)",
)  # fmt: skip
STEP_COLUMNS = ("step", "recipients", "conversions", "conversion rate", "revenue", "skipped")
BREAKDOWN_COLUMNS = (
    "campaign", "group", "variant", "locale", "occurrences", "recipients", "conversions",
    "conversion rate", "revenue",
)  # fmt: skip
DETAIL_COLUMNS = ("campaign", "occurrence", *BREAKDOWN_COLUMNS[1:4], *BREAKDOWN_COLUMNS[5:])
NUMERIC = {"recipients", "conversions", "occurrences", "entries", "holdout entries", "orders"}


def _table(title: str, rows: Sequence[Row], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in NUMERIC else "left")
    previous = ""
    for row in rows:
        first = row.get(columns[0], "")
        shown = "" if first == previous else first  # a campaign's name once, on its first row
        previous = first
        table.add_row(shown, *(row.get(c, "") for c in columns[1:]))
    return table


def _verdicts(console: Console, verdicts: list[tuple[str, str]]) -> None:
    for name, text in verdicts:
        console.print(f"  [bold]{name}[/]: {text}", highlight=False)
    console.print()


def print_report(report: Report, console: Console, *, detail: bool = False) -> None:
    """Print the report's measurement sections (the shop's CLV and retention are in the
    HTML file)."""
    console.print(
        f"[bold]{report.shop}: what the emails did[/], {report.since:%Y-%m-%d} – "
        f"{report.as_of:%Y-%m-%d} ({report.timezone})",
        highlight=False,
    )
    console.print(
        "Holdout customers got no email: the difference is the effect. An order counts in\n"
        "the attribution window after the send (a journey's: after entering).\n",
        highlight=False,
    )
    experiments = experiment_rows(report)
    if experiments:
        console.print(_table("Campaigns against their holdout", experiments, CAMPAIGN_COLUMNS))
        _verdicts(console, statements(report))
    else:
        console.print("No campaign messages in this period.\n")
    journeys = journey_uplift_rows(report)
    if journeys:
        columns = tuple(journeys[0])
        console.print(_table("Journeys against their holdout", journeys, columns))
        _verdicts(console, journey_statements(report))
        for result in report.journeys:
            steps = journey_step_rows(report, result)
            title = (
                f"{result.journey}: per step (orders within {result.attribution_days} days "
                "after the step's send)"
            )
            console.print(_table(title, steps, STEP_COLUMNS))
    breakdown = attribution_rows(report)
    if breakdown:
        console.print(
            _table(
                "By campaign, group, variant and locale (every occurrence in the period)",
                breakdown,
                BREAKDOWN_COLUMNS,
            )
        )
    if detail:
        console.print(_table("Each occurrence", detail_rows(report), DETAIL_COLUMNS))
    _predictions(console, report.predictions)


def _predictions(console: Console, check: dict[str, Any]) -> None:
    """The prediction check: the headline and the purchases by past repeat purchases."""
    if not check:
        return
    if "problem" in check:
        console.print(f"Predicted CLV: no check ({check['problem']})", highlight=False)
        return
    rows = [{k: str(v) for k, v in row.items()} for row in repeat_rows(check)]
    title = "Predicted CLV: purchases in the holdout by past repeat purchases"
    console.print(_table(title, rows, tuple(rows[0])))
    console.print(check_headline(check), highlight=False)
