"""The send window, in each customer's own time zone.

The run's ``as_of`` is naive shop-local time; each customer's local time is that instant in
the customer's ``timezone`` (the shop's when the column is missing, empty or not an IANA
name). The work is one conversion per distinct time zone, not one per customer.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from clvflow.project.campaign_spec import SendWindow


def _zone(name: object, fallback: ZoneInfo) -> ZoneInfo:
    if not isinstance(name, str) or not name.strip():
        return fallback
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def outside_window(
    frame: pd.DataFrame, window: SendWindow | None, as_of: dt.datetime, shop_timezone: str
) -> pd.Series:
    """True for each row whose local time at ``as_of`` is outside ``window``."""
    if window is None or frame.empty:
        return pd.Series(False, index=frame.index, dtype=bool)
    shop = ZoneInfo(shop_timezone)
    instant = as_of.replace(tzinfo=shop)
    zones = (
        frame["timezone"].astype("string").fillna("")
        if "timezone" in frame
        else pd.Series("", index=frame.index, dtype="string")
    )
    verdict = {
        name: not window.contains(instant.astimezone(_zone(name, shop)).time())
        for name in zones.unique()
    }
    return zones.map(verdict).astype(bool)


def next_opening(
    window: SendWindow, as_of: dt.datetime, shop_timezone: str, customer_timezone: object
) -> dt.datetime:
    """When the window next opens for a customer, as an aware UTC time (after ``as_of``)."""
    shop = ZoneInfo(shop_timezone)
    zone = _zone(customer_timezone, shop)
    local = as_of.replace(tzinfo=shop).astimezone(zone)
    start = window.start_time
    day = local.date()
    for _ in range(3):
        candidate = dt.datetime.combine(day, start, tzinfo=zone)
        if candidate > local:
            return candidate.astimezone(dt.UTC)
        day += dt.timedelta(days=1)
    raise AssertionError("unreachable: a window opens every day")
