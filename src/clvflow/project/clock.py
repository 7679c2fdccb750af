"""The shop's clock: now, as a naive local timestamp like the shop's data."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def local_now(timezone: str) -> dt.datetime:
    """Now in the shop's time zone, as a naive local timestamp (whole seconds)."""
    return dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
