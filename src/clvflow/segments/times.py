"""Time expressions in segments, resolved against the run's ``as_of`` instant.

Accepted: ISO dates and timestamps, ``now``, ``today``, ``N days|weeks|months|years ago``,
``in N days|weeks|months|years``; and for ``within``: ``last N …`` / ``next N …``.
All results are naive timestamps in the shop's local time, like the shop's data: an ISO
timestamp with an offset (``2026-11-20T10:00:00+00:00``, or ``Z``) names an instant and is
converted to the shop's time zone; one without an offset is already local time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

_UNITS = {"day": "days", "week": "weeks", "month": "months", "year": "years"}
_AGO = re.compile(r"^(\d+)\s+(day|week|month|year)s?\s+ago$")
_IN = re.compile(r"^in\s+(\d+)\s+(day|week|month|year)s?$")
_WITHIN = re.compile(r"^(last|next)\s+(\d+)\s+(day|week|month|year)s?$")

TIME_HELP = (
    "use an ISO date (2026-05-01), 'now', 'today', 'N days|weeks|months|years ago' "
    "or 'in N days|weeks|months|years'"
)
WITHIN_HELP = "use 'last N days|weeks|months|years' or 'next N days|weeks|months|years'"


class TimeExpressionError(ValueError):
    """The text is not a time expression; the message says what is accepted."""


def _shift(n: int, unit: str) -> relativedelta:
    return relativedelta(**{_UNITS[unit]: n})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Window:
    """A closed interval ``[start, end]`` of local time."""

    start: dt.datetime
    end: dt.datetime


def local(value: dt.datetime, timezone: str | None) -> dt.datetime:
    """``value`` as naive local time: an aware one converted to ``timezone`` (when known)."""
    if value.tzinfo is not None and timezone is not None:
        value = value.astimezone(ZoneInfo(timezone))
    return value.replace(tzinfo=None)


def resolve_time(value: object, as_of: dt.datetime, timezone: str | None = None) -> dt.datetime:
    """Resolve a time expression (or a date/datetime from YAML) against ``as_of``, in the
    shop's ``timezone`` (IANA name; aware times are converted to it)."""
    if isinstance(value, dt.datetime):
        return local(value, timezone)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if not isinstance(value, str):
        raise TimeExpressionError(f"{value!r} is not a time; {TIME_HELP}")
    text = " ".join(value.strip().lower().split())
    if text == "now":
        return as_of
    if text == "today":
        return dt.datetime.combine(as_of.date(), dt.time())
    if match := _AGO.match(text):
        return as_of - _shift(int(match.group(1)), match.group(2))
    if match := _IN.match(text):
        return as_of + _shift(int(match.group(1)), match.group(2))
    for spelling in (value.strip(), value.strip().upper()):  # the upper case: 't', 'z'
        try:
            return local(dt.datetime.fromisoformat(spelling), timezone)
        except ValueError:
            continue
    raise TimeExpressionError(f"'{value}' is not a time; {TIME_HELP}")


def resolve_window(value: object, as_of: dt.datetime) -> Window:
    """``last 30 days`` → ``[as_of - 30 days, as_of]``; ``next 2 weeks`` → ``[as_of, +14d]``."""
    text = " ".join(str(value).strip().lower().split()) if isinstance(value, str) else ""
    match = _WITHIN.match(text)
    if not match:
        raise TimeExpressionError(f"'{value}' is not a window; {WITHIN_HELP}")
    shift = _shift(int(match.group(2)), match.group(3))
    if match.group(1) == "last":
        return Window(start=as_of - shift, end=as_of)
    return Window(start=as_of, end=as_of + shift)
