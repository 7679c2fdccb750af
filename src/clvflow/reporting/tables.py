"""The report's tables as rows of display text, shared by the HTML report and the Prefect
table and markdown artifacts."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from clvflow.measurement.attribution import rollup
from clvflow.measurement.journeys import JourneyResult
from clvflow.measurement.sends import ENGAGEMENT
from clvflow.measurement.stats import Comparison, Group, Interval
from clvflow.reporting.report import Report

Row = dict[str, str]


def pct(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def money(value: float | None, currency: str) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.2f} {currency}"


def number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def points(interval: Interval) -> str:
    if math.isnan(interval.low):
        return "—"
    return (
        f"{100 * interval.estimate:+.1f} pp [{100 * interval.low:+.1f}, {100 * interval.high:+.1f}]"
    )


def money_interval(interval: Interval, currency: str) -> str:
    if math.isnan(interval.low):
        return "—"
    return f"{interval.estimate:+,.2f} [{interval.low:+,.2f}, {interval.high:+,.2f}] {currency}"


def _group_cells(label: str, group: Group, currency: str) -> Row:
    return {
        "group": label,
        "recipients": str(group.recipients),
        "conversions": str(group.conversions),
        "conversion rate": pct(group.rate),
        "revenue": money(group.revenue, currency),
        "revenue per recipient": money(group.revenue_per_recipient, currency),
    }


def _comparison_cells(comparison: Comparison | None, currency: str) -> Row:
    if comparison is None:
        return {"uplift (95% CI)": "—", "revenue uplift per recipient (95% CI)": "—"}
    return {
        "uplift (95% CI)": points(comparison.rate_uplift),
        "revenue uplift per recipient (95% CI)": money_interval(
            comparison.revenue_uplift, currency
        ),
    }


def experiment_rows(report: Report) -> list[Row]:
    """Per campaign: treated and holdout, then each variant, with uplift and interval."""
    cur = report.currency
    rows: list[Row] = []
    for result in report.campaigns.results:
        rows.append(
            {"campaign": result.campaign, **_group_cells("treated", result.treated, cur),
             **_comparison_cells(result.vs_holdout, cur)}
        )  # fmt: skip
        if result.holdout.recipients:
            rows.append(
                {"campaign": result.campaign, **_group_cells("holdout", result.holdout, cur),
                 **_comparison_cells(None, cur)}
            )  # fmt: skip
        for variant in result.variants:
            versus = variant.vs_baseline or variant.vs_holdout
            label = f"variant {variant.variant}"
            if variant.vs_baseline is not None:
                label += f" vs {result.baseline}"
            elif variant.vs_holdout is not None:
                label += " vs holdout"
            rows.append(
                {"campaign": result.campaign, **_group_cells(label, variant.group, cur),
                 **_comparison_cells(versus, cur)}
            )  # fmt: skip
    return rows


def statements(report: Report) -> list[tuple[str, str]]:
    """(campaign, plain-language verdict) for every comparison the report makes."""
    out: list[tuple[str, str]] = []
    for result in report.campaigns.results:
        if result.vs_holdout is not None:
            out.append((result.campaign, result.vs_holdout.statement))
        else:
            out.append((result.campaign, "No holdout: uplift cannot be measured."))
        for variant in result.variants:
            if variant.vs_baseline is not None:
                out.append((result.campaign, variant.vs_baseline.statement))
            if variant.vs_holdout is not None:
                out.append((result.campaign, variant.vs_holdout.statement))
    return out


def attribution_rows(report: Report) -> list[Row]:
    """Revenue and conversions per campaign, group, variant and locale, over all of each
    campaign's occurrences in the period (a daily campaign's days, a per-order
    campaign's orders): the breakdown a marketer reads. :func:`detail_rows` has a row
    per occurrence."""
    cells = report.campaigns.cells
    if cells.empty:
        return []
    keys = ["campaign", "group", "variant", "locale"]
    occurrences = cells.groupby(keys)["occurrence"].nunique().rename("occurrences")
    summed = rollup(cells, tuple(keys)).merge(occurrences.reset_index(), on=keys)
    first = summed["group"] != "treated"  # treated before holdout, as in the other tables
    summed = summed.assign(_order=first).sort_values(["campaign", "_order", "variant", "locale"])
    return [
        {
            "campaign": str(cell["campaign"]),
            "group": str(cell["group"]),
            "variant": str(cell["variant"]) or "—",
            "locale": str(cell["locale"]),
            "occurrences": str(int(cell["occurrences"])),
            **_measures(report, cell),
        }
        for cell in _records(summed)
    ]


def detail_rows(report: Report) -> list[Row]:
    """A row per campaign occurrence, group, variant and locale: the detail behind
    :func:`attribution_rows` (journeys' step messages are in the CSV export)."""
    cells = report.campaigns.cells
    if cells.empty:
        return []
    return [
        {
            "campaign": str(cell["campaign"]),
            "occurrence": str(cell["occurrence"]),
            "group": str(cell["group"]),
            "variant": str(cell["variant"]) or "—",
            "locale": str(cell["locale"]),
            **_measures(report, cell),
        }
        for cell in _records(cells)
    ]


def _measures(report: Report, cell: dict[str, Any]) -> Row:
    name = str(cell["campaign"])
    window = report.campaigns.windows.get(name, report.campaigns.default_window)
    n = int(cell["recipients"])
    return {
        "window": _window(window.total_seconds()),
        "recipients": str(n),
        "conversions": str(int(cell["conversions"])),
        "conversion rate": pct(int(cell["conversions"]) / n if n else None),
        "orders": str(int(cell["orders"])),
        "revenue": money(float(cell["revenue"]), report.currency),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _window(seconds: float) -> str:
    hours = int(seconds // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 else f"{hours} hours"


def campaign_totals(report: Report) -> list[Row]:
    """Attributed revenue per campaign (treated only)."""
    cells = report.campaigns.cells
    if cells.empty:
        return []
    totals = rollup(cells[cells["group"] == "treated"], ("campaign",))
    return [
        {
            "campaign": str(r["campaign"]),
            "recipients": str(int(r["recipients"])),
            "conversions": str(int(r["conversions"])),
            "orders": str(int(r["orders"])),
            "revenue": money(float(r["revenue"]), report.currency),
        }
        for r in _records(totals)
    ]


def engagement_rows(report: Report) -> list[Row]:
    """Per campaign: messages delivered, opened, clicked, bounced, reported, unsubscribed."""
    wide = report.campaigns.engagement
    sent = {}
    cells = report.campaigns.cells
    if not cells.empty:
        treated = rollup(cells[cells["group"] == "treated"], ("campaign",))
        sent = {str(r["campaign"]): int(r["recipients"]) for r in _records(treated)}
    rows: list[Row] = []
    for campaign, counts in zip(wide.index, _records(wide), strict=True):
        n = sent.get(str(campaign), 0)
        row: Row = {"campaign": str(campaign), "sent": str(n)}
        for event in ENGAGEMENT:
            value = int(counts[event])
            row[event] = f"{value} ({pct(value / n)})" if n else str(value)
        rows.append(row)
    return rows


def shop_rows(report: Report) -> list[Row]:
    m = report.customers.metrics
    cur = report.currency
    period = f"{m.since:%Y-%m-%d} – {m.as_of:%Y-%m-%d}"
    retention = f"{pct(m.retention_rate)} ({m.retained} of {m.prior_buyers})"
    table: list[tuple[str, str, str]] = [
        ("customers", str(m.customers), "—"),
        ("customers with orders", str(m.buyers), str(m.period_buyers)),
        ("new buyers (first order)", str(m.buyers), str(m.new_buyers)),
        ("orders", str(m.orders), str(m.period_orders)),
        ("revenue", money(m.revenue, cur), money(m.period_revenue, cur)),
        (
            "average order value",
            money(m.average_order_value, cur),
            money(m.period_average_order_value, cur),
        ),
        (
            "purchase frequency (orders per buyer)",
            number(m.purchase_frequency),
            number(m.period_purchase_frequency),
        ),
        ("repeat purchase rate (buyers with 2+ orders)", pct(m.repeat_purchase_rate), "—"),
        ("retention rate (buyers of the previous period who ordered again)", "—", retention),
        ("historical CLV, mean over buyers", money(m.mean_clv, cur), "—"),
        ("historical CLV, median over buyers", money(m.median_clv, cur), "—"),
    ]
    return [{"metric": a, "all time": b, period: c} for a, b, c in table]


def ltv_cac_rows(report: Report) -> list[Row]:
    frame = report.customers.ltv_cac
    if frame is None:
        return []
    cur = report.currency
    return [
        {
            "channel": str(r["channel"]),
            "customers": str(int(r["customers"])),
            "mean historical CLV": money(float(r["mean_clv"]), cur),
            "CAC": money(float(r["cac"]), cur),
            "LTV:CAC": number(float(r["ltv_cac"])),
        }
        for r in _records(frame)
    ]


@dataclass(frozen=True)
class JourneySection:
    """One journey in the report: what counts, its steps, its uplift against its holdout."""

    journey: str
    note: str
    steps: list[Row]
    uplift: str


def _days(span: dt.timedelta) -> str:
    return _window(span.total_seconds())


def journey_step_rows(report: Report, result: JourneyResult) -> list[Row]:
    """Per step: recipients (messages sent), conversions, orders and revenue in the
    journey's attribution window, and the step messages skipped, by reason."""
    cur = report.currency
    rows: list[Row] = []
    for step in result.steps:
        n = step.recipients
        skipped = ", ".join(
            f"{reason or 'no reason'} {count}" for reason, count in step.skipped.items()
        )
        rows.append(
            {
                "step": step.step,
                "recipients": str(n),
                "conversions": str(step.conversions),
                "conversion rate": pct(step.rate),
                "orders": str(step.orders),
                "revenue": money(step.revenue, cur),
                "revenue per recipient": money(step.revenue / n if n else None, cur),
                "skipped": skipped or "—",
            }
        )
    return rows


def journey_uplift(report: Report, result: JourneyResult) -> str:
    """The journey's entries against its holdout, in one line with the 95% intervals."""
    cur = report.currency
    treated, holdout = result.treated, result.holdout
    window = _days(result.window)
    entered = (
        f"{treated.recipients} entries, {treated.conversions} with an order within {window} "
        f"of entering ({pct(treated.rate)})"
        if treated.recipients
        else "no entries in this period"
    )
    comparison = result.vs_holdout
    if comparison is None:
        if not result.holdout_percent:
            return f"No holdout (holdout_percent is 0): uplift cannot be measured; {entered}."
        if not holdout.recipients:
            return f"No holdout entries in this period: uplift cannot be measured; {entered}."
        return (
            f"No treated entries in this period: uplift cannot be measured; "
            f"{holdout.recipients} held out."
        )
    return (
        f"Uplift against holdout ({window} after entering): treated {treated.recipients} "
        f"entries, {treated.conversions} converted ({pct(treated.rate)}), "
        f"{money(treated.revenue_per_recipient, cur)} per entry; holdout "
        f"{holdout.recipients} entries, {holdout.conversions} converted "
        f"({pct(holdout.rate)}), {money(holdout.revenue_per_recipient, cur)} per entry. "
        f"Conversion uplift (95% CI) {points(comparison.rate_uplift)}; revenue uplift per "
        f"entry (95% CI) {money_interval(comparison.revenue_uplift, cur)}. "
        f"{comparison.statement}"
    )


def journey_uplift_rows(report: Report) -> list[Row]:
    """A row per journey: its entries against its held-out entries, with the 95% intervals."""
    cur = report.currency
    rows: list[Row] = []
    for result in report.journeys:
        treated, holdout, comparison = result.treated, result.holdout, result.vs_holdout
        rows.append(
            {
                "journey": result.journey,
                "window": _days(result.window),
                "entries": str(treated.recipients),
                "conversion rate": pct(treated.rate),
                "holdout entries": str(holdout.recipients),
                "holdout rate": pct(holdout.rate),
                "uplift (95% CI)": "—" if comparison is None else points(comparison.rate_uplift),
                "revenue uplift per entry (95% CI)": "—"
                if comparison is None
                else money_interval(comparison.revenue_uplift, cur),
            }
        )
    return rows


def journey_statements(report: Report) -> list[tuple[str, str]]:
    """(journey, plain-language verdict) for each journey."""
    out: list[tuple[str, str]] = []
    for result in report.journeys:
        if result.vs_holdout is not None:
            out.append((result.journey, result.vs_holdout.statement))
        elif not result.holdout_percent:
            out.append(
                (result.journey, "No holdout (holdout_percent is 0): uplift cannot be measured.")
            )
        else:
            out.append((result.journey, "No holdout or no treated entries in this period."))
    return out


def journey_note(result: JourneyResult) -> str:
    how = "its steps' waits" if result.from_waits else "30 days, as a step is timed on a date,"
    return (
        f"Steps: orders within {result.attribution_days} days after the step's send (an "
        f"order in the windows of two steps counts once, for the later one). Uplift: every "
        f"entry of the period not held out (reached or not) against the held-out entries, "
        f"orders within {_days(result.window)} of entering ({how} plus "
        f"{result.attribution_days} days)."
    )


def journey_sections(report: Report) -> list[JourneySection]:
    return [
        JourneySection(
            journey=result.journey,
            note=journey_note(result),
            steps=journey_step_rows(report, result),
            uplift=journey_uplift(report, result),
        )
        for result in report.journeys
    ]
