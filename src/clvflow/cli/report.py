"""``clvflow report``: the measurement report as one self-contained HTML file.

Runs in this process without Prefect (the ``daily-report`` deployment publishes the same
report as Prefect artifacts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.project.layout import Project
from clvflow.segments.times import TimeExpressionError, resolve_time

DEFAULT_SINCE = "90 days ago"


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
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
) -> int:
    """Write the measurement report: uplift against holdouts, A/B tests, CLV, retention."""
    from clvflow.reporting.html import write_report
    from clvflow.reporting.report import build_report

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
    path = write_report(build_report(loaded, start, until), folder)
    typer.echo(f"Report for {start:%Y-%m-%d} – {until:%Y-%m-%d} written to {path}")
    return 0
