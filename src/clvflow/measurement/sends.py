"""What the ledger says was sent (or held out), and what SendGrid reported back.

Ledger times are naive UTC. A sent message's moment is when its outcome was recorded
(``finished_at``); a holdout row's is when the run planned it (``planned_at``): the same
run, the same minutes, so both groups start their attribution window together.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import String, case, func, select, type_coerce

from clvflow.ledger.schema import events, messages
from clvflow.ledger.store import Ledger

TREATED = "treated"
HOLDOUT = "holdout"
ENGAGEMENT = ("delivered", "open", "click", "bounce", "spamreport", "unsubscribe")
SEND_COLUMNS = ("message_id", "campaign", "occurrence", "customer_id", "group", "variant")


def local_to_utc(local: dt.datetime, timezone: str) -> dt.datetime:
    """A naive shop-local time as naive UTC (the first of two readings in a DST fold)."""
    aware = local.replace(tzinfo=ZoneInfo(timezone))
    return aware.astimezone(dt.UTC).replace(tzinfo=None)


def read_sends(
    ledger: Ledger,
    since_utc: dt.datetime,
    until_utc: dt.datetime | None = None,
    campaign: str | None = None,
) -> pd.DataFrame:
    """One row per sent or holdout message since ``since_utc`` (of ``campaign``, or of
    every one): message_id, campaign, occurrence, customer_id, group (treated|holdout),
    variant, locale, sent_at (UTC)."""
    moment = func.coalesce(messages.c.finished_at, messages.c.planned_at)
    stmt = select(
        messages.c.id.label("message_id"),
        messages.c.campaign,
        messages.c.occurrence,
        messages.c.customer_id,
        case((messages.c.status == "holdout", HOLDOUT), else_=TREATED).label("group"),
        messages.c.variant,
        messages.c.locale,
        # as text: SQLite's per-row datetime parsing in Python is slow; pandas parses the
        # column at once (PostgreSQL's driver returns datetimes, which pandas takes as well)
        type_coerce(
            case((messages.c.status == "holdout", messages.c.planned_at), else_=moment), String
        ).label("sent_at"),
    ).where(messages.c.status.in_(("sent", "holdout")), messages.c.planned_at >= since_utc)
    if until_utc is not None:
        stmt = stmt.where(messages.c.planned_at < until_utc)
    if campaign is not None:
        stmt = stmt.where(messages.c.campaign == campaign)
    columns = [*SEND_COLUMNS, "locale", "sent_at"]
    with ledger.engine.connect() as con:
        rows = con.execute(stmt.order_by(messages.c.id)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], format="ISO8601").astype("datetime64[us]")
    frame["message_id"] = frame["message_id"].astype("int64")
    return frame


def engagement_counts(ledger: Ledger, since_utc: dt.datetime) -> pd.DataFrame:
    """Per campaign: messages that had each kind of event (distinct messages, not events),
    for messages planned since ``since_utc``."""
    stmt = (
        select(messages.c.campaign, events.c.event, func.count(func.distinct(messages.c.id)))
        .select_from(events.join(messages, events.c.message_id == messages.c.id))
        .where(
            messages.c.planned_at >= since_utc,
            messages.c.status == "sent",
            events.c.event.in_(ENGAGEMENT),
        )
        .group_by(messages.c.campaign, events.c.event)
    )
    with ledger.engine.connect() as con:
        rows = con.execute(stmt).all()
    long = pd.DataFrame([tuple(r) for r in rows], columns=["campaign", "event", "messages"])
    wide = long.pivot_table(
        index="campaign", columns="event", values="messages", aggfunc="sum", fill_value=0
    )
    return wide.reindex(columns=list(ENGAGEMENT), fill_value=0).astype("int64")
