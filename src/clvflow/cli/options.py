"""Options shared by the commands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from clvflow.project.layout import Project
from clvflow.segments.times import TimeExpressionError, resolve_time

ProjectOption = Annotated[
    Path, typer.Option("--project", "-p", help="Project folder (holds clvflow.yaml).")
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Evaluate as of this time: ISO date/time, 'now', 'today', '3 days ago'. "
        "Default: now in the shop's time zone.",
    ),
]


def resolve_as_of(project: Project, text: str | None) -> dt.datetime:
    timezone = project.config.shop.timezone
    now = dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
    if text is None:
        return now
    try:
        return resolve_time(text, now, timezone)
    except TimeExpressionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
