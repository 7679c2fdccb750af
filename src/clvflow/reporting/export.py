"""The report's detail as a CSV file: a row per campaign occurrence (a day of a daily
campaign, an order of a per-order one), group, variant and locale, then each journey's
step messages (occurrence ``<entry>/<step>``), with plain numbers for a spreadsheet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clvflow.reporting.report import Report

COLUMNS = (
    "campaign", "occurrence", "group", "variant", "locale", "window_days", "recipients",
    "conversions", "orders", "revenue",
)  # fmt: skip


def detail_frame(report: Report) -> pd.DataFrame:
    """The attribution cells of every campaign and journey step, with each one's window."""
    measured = report.campaigns
    parts = []
    if not measured.cells.empty:
        days = measured.cells["campaign"].map(
            lambda c: measured.windows.get(str(c), measured.default_window).total_seconds() / 86_400
        )
        parts.append(measured.cells.assign(window_days=days))
    for journey in report.journeys:
        if not journey.cells.empty:
            parts.append(journey.cells.assign(window_days=float(journey.attribution_days)))
    if not parts:
        return pd.DataFrame(columns=list(COLUMNS))
    frame = pd.concat(parts, ignore_index=True)
    frame["variant"] = frame["variant"].replace("", None)
    frame["revenue"] = frame["revenue"].round(2)
    return frame[list(COLUMNS)]


def write_csv(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    detail_frame(report).to_csv(path, index=False)
    return path
