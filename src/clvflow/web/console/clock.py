"""The instant a console page shows the shop at: ``?as_of=`` (an ISO time, 'today',
'3 days ago'…, in the shop's time zone), else now, rounded down to the console's step, so
that the pages viewed within one step share their computed counts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from clvflow.segments.times import TimeExpressionError, resolve_time

STEP_MINUTES = 15


class AsOfError(ValueError):
    """``?as_of=`` is not a time."""


def console_now(timezone: str, now: dt.datetime | None = None) -> dt.datetime:
    """The shop's local time now (naive), rounded down to ``STEP_MINUTES``."""
    local = (now or dt.datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone))
    minute = local.minute - local.minute % STEP_MINUTES
    return local.replace(tzinfo=None, minute=minute, second=0, microsecond=0)


def resolve_as_of(text: str | None, timezone: str) -> dt.datetime:
    """``text`` as a naive shop-local time, relative expressions against the console's now."""
    now = console_now(timezone)
    if text is None or not text.strip():
        return now
    try:
        return resolve_time(text.strip(), now, timezone)
    except TimeExpressionError as exc:
        raise AsOfError(str(exc)) from None
