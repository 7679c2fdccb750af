"""When the demo's simulated runs act: hourly runs, the customers' send window in their own
time zones, and shop-local times as the ledger's UTC.

Every time here is naive shop-local (``datetime64[us]``), like the shop's data.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from clvflow.project.campaign_spec import SendWindow

HOUR = pd.Timedelta(hours=1)


def next_run(times: pd.Series, every: pd.Timedelta = HOUR) -> pd.Series:
    """The first run of a schedule that runs every ``every`` (on the hour) at or after each
    time."""
    runs: pd.Series = times.dt.ceil(every)
    return runs


def at_least(times: pd.Series, moment: pd.Timestamp) -> pd.Series:
    """Each time, or ``moment`` when it is earlier."""
    later: pd.Series = times.mask(times < moment, moment)
    return later


def at_most(times: pd.Series, moment: pd.Timestamp) -> pd.Series:
    """Each time, or ``moment`` when it is later."""
    earlier: pd.Series = times.mask(times > moment, moment)
    return earlier


def to_utc(local: pd.Series, timezone: str) -> pd.Series:
    """Naive shop-local times as naive UTC (a DST gap or fold resolved forward/first)."""
    aware = pd.to_datetime(local).dt.tz_localize(
        timezone, ambiguous=True, nonexistent="shift_forward"
    )
    return aware.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def _between(local: pd.Series, start: dt.time, end: dt.time) -> pd.Series:
    """Whether each local time of day lies in [start, end) (a window across midnight
    when ``end`` is before ``start``)."""
    clock = local.dt.hour * 60 + local.dt.minute
    low, high = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    inside: pd.Series = (
        (clock >= low) & (clock < high) if low < high else (clock >= low) | (clock < high)
    )
    return inside


def first_run_in_window(
    times: pd.Series,
    zones: pd.Series,
    window: SendWindow | None,
    shop_timezone: str,
) -> pd.Series:
    """The first hourly run at or after each time that falls inside the customer's send
    window in the customer's time zone (``zones``; missing: the shop's)."""
    runs = next_run(times)
    if window is None:
        return runs
    zones = zones.fillna(shop_timezone).astype(str)
    out = runs.copy()
    for zone in zones.unique():  # a handful of time zones, each one set of rows at once
        rows = zones == zone
        shop = runs[rows].dt.tz_localize(shop_timezone, ambiguous=True, nonexistent="shift_forward")
        local = shop.dt.tz_convert(zone).dt.tz_localize(None)
        inside = _between(local, window.start_time, window.end_time)
        start = pd.Timedelta(hours=window.start_time.hour, minutes=window.start_time.minute)
        opening = local.dt.normalize() + start
        opening = opening.where(opening > local, opening + pd.Timedelta(days=1))
        moved = local.where(inside, opening)
        back = moved.dt.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        shifted = back.dt.tz_convert(shop_timezone).dt.tz_localize(None)
        out[rows] = next_run(shifted.astype("datetime64[us]"))
    return out.astype("datetime64[us]")


def uniform_between(rng: np.random.Generator, low: pd.Series, high: pd.Series) -> pd.Series:
    """A time drawn uniformly in (low, high] for each row (whole seconds)."""
    span = (high - low).dt.total_seconds().to_numpy()
    seconds = np.ceil(rng.random(len(span)) * np.maximum(span, 1.0))
    return (low + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]")
