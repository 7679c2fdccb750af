"""Who enters a journey at a run: a segment's members, or the orders placed since the
last runs could see them; each entry keyed by its occurrence under the re-entry rule."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvflow.data.sources import ShopData
from clvflow.journeys.catalog import Journey
from clvflow.ledger.journeys import entered_since
from clvflow.ledger.store import Ledger
from clvflow.planning.holdout import held_out
from clvflow.planning.plan import ledger_time
from clvflow.project.campaign_spec import Every
from clvflow.project.journey_spec import parse_period
from clvflow.segments.attributes import sql_timestamp
from clvflow.segments.catalog import SegmentCatalog, compile_segment

ENTRANT_COLUMNS = ("occurrence", "customer_id", "entered_at", "holdout")


def to_utc(local: pd.Series, timezone: str) -> pd.Series:
    """Naive shop-local times as naive UTC (a DST gap or fold resolved forward/first)."""
    aware = pd.to_datetime(local).dt.tz_localize(
        timezone, ambiguous=True, nonexistent="shift_forward"
    )
    return aware.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")


def to_local(utc: pd.Series, timezone: str) -> pd.Series:
    """Naive UTC times as naive shop-local times."""
    aware = pd.to_datetime(utc).dt.tz_localize("UTC").dt.tz_convert(timezone)
    return aware.dt.tz_localize(None).astype("datetime64[us]")


def entrants(
    data: ShopData,
    catalog: SegmentCatalog,
    ledger: Ledger,
    journey: Journey,
    as_of: dt.datetime,
    holdout_percent: float,
) -> pd.DataFrame:
    """The entries this run would add (``ENTRANT_COLUMNS``; ``entered_at`` naive UTC), a
    share ``holdout_percent`` of them held out. The ledger's unique key drops those
    already there."""
    spec = journey.spec
    if spec.entry.event is not None:
        since = as_of - parse_period(spec.entry.within)
        frame = data.frame(
            f"{data.with_clause()}SELECT CAST(order_id AS VARCHAR) AS occurrence, "
            "CAST(customer_id AS VARCHAR) AS customer_id, "
            "CAST(placed_at AS TIMESTAMP) AS entered_at FROM orders "
            f"WHERE placed_at > {sql_timestamp(since)} AND placed_at <= {sql_timestamp(as_of)}"
        )
        frame["entered_at"] = to_utc(frame["entered_at"], data.timezone)
    else:
        frame = _segment_entrants(data, catalog, ledger, journey, as_of)
    frame["holdout"] = entry_holdout(journey, frame, holdout_percent)
    return frame[list(ENTRANT_COLUMNS)].reset_index(drop=True)


def entry_holdout(journey: Journey, entries: pd.DataFrame, percent: float) -> pd.Series:
    """1 for the entries held out (by customer; by order for a per-order journey), else 0."""
    ids = entries["customer_id"].astype(str).tolist()
    orders = entries["occurrence"].astype(str).tolist()
    per_order = orders if journey.spec.reentry == "per_order" else None
    held = held_out(journey.name, ids, percent, per_order)
    return pd.Series(held.astype("int64"), index=entries.index)


def _segment_entrants(
    data: ShopData,
    catalog: SegmentCatalog,
    ledger: Ledger,
    journey: Journey,
    as_of: dt.datetime,
) -> pd.DataFrame:
    spec = journey.spec
    segment = str(spec.entry.segment)
    compiled = compile_segment(catalog, segment, data, as_of)
    entered = ledger_time(as_of, data.timezone)
    if spec.reentry == "per_order":
        sql = compiled.members_sql(
            "CAST(cf.customer_id AS VARCHAR) AS customer_id, "
            "CAST(lo.order_id AS VARCHAR) AS occurrence",
            join="LEFT JOIN (SELECT customer_id, order_id, ROW_NUMBER() "
            "OVER (PARTITION BY customer_id ORDER BY placed_at DESC, order_id DESC) AS rn "
            f"FROM orders WHERE placed_at <= {sql_timestamp(as_of)}) AS lo "
            "ON lo.customer_id = cf.customer_id AND lo.rn = 1\n",
        )
        frame = data.frame(sql)
        frame["occurrence"] = frame["occurrence"].fillna("no-order")
    else:
        ids = [str(c) for c in data.first_column(compiled.members_sql())]
        occurrence = "once" if spec.reentry == "once" else as_of.date().isoformat()
        frame = pd.DataFrame({"customer_id": ids, "occurrence": occurrence})
        if isinstance(spec.reentry, Every):
            since = ledger_time(as_of - dt.timedelta(days=spec.reentry.days), data.timezone)
            with ledger.engine.connect() as con:
                busy = entered_since(con, journey.name, since)
            frame = frame[~frame["customer_id"].isin(busy)]
    frame["entered_at"] = pd.Timestamp(entered)
    frame["entered_at"] = frame["entered_at"].astype("datetime64[us]")
    return frame
