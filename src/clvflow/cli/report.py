"""``clvflow report``: the measurement report on the terminal and as one self-contained
HTML file; ``--detail`` adds a row per campaign occurrence, ``--csv`` writes those rows
to a file.

Runs in this process without Prefect (the ``daily-report`` deployment publishes the same
report as Prefect artifacts).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.project.layout import Project
from clvflow.segments.times import TimeExpressionError, resolve_time

DEFAULT_SINCE = "6 months ago"


def report(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Campaign messages from this time on, and the retention period: an ISO "
            "date/time or '30 days ago'.",
        ),
    ] = DEFAULT_SINCE,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.html and the charts (default: reports/)."),
    ] = None,
    detail: Annotated[
        bool,
        typer.Option(
            "--detail",
            help="Also a row per occurrence (each day of a daily campaign, each order of a "
            "per-order one), on the terminal and in the HTML file.",
        ),
    ] = False,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Write a row per occurrence (and journey step) to this file."),
    ] = None,
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
) -> int:
    """Measure the emails: uplift against holdouts, A/B tests, journeys, CLV, retention."""
    from rich.console import Console

    from clvflow.reporting.export import write_csv
    from clvflow.reporting.html import write_report
    from clvflow.reporting.report import build_report
    from clvflow.reporting.terminal import print_report

    loaded = Project.load(project)
    until = resolve_as_of(loaded, as_of)
    try:
        start = resolve_time(since, until)
    except TimeExpressionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    if start >= until:
        raise typer.BadParameter(
            f"{start:%Y-%m-%d %H:%M} is not before {until:%Y-%m-%d %H:%M}", param_hint="--since"
        )
    folder = out if out is not None else loaded.root / "reports"
    built = build_report(loaded, start, until)
    console = Console(width=shutil.get_terminal_size((160, 40)).columns)
    print_report(built, console, detail=detail)
    path = write_report(built, folder, detail=detail)
    typer.echo(f"Report for {start:%Y-%m-%d} – {until:%Y-%m-%d} written to {path}")
    if csv is not None:
        typer.echo(f"Each occurrence written to {write_csv(built, csv)}")
    return 0
