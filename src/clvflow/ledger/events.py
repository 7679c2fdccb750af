"""Engagement and delivery events from the Event Webhook, stored once each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from clvflow.ledger.database import insert_new, utcnow
from clvflow.ledger.schema import events


def add_events(con: Connection, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Store the events not seen before (by ``event_id``); returns the ids that were new."""
    new: list[str] = []
    now = utcnow()
    for row in rows:
        stmt = (
            insert_new(con, events, ["event_id"])
            .values(**row, received_at=now)
            .returning(events.c.event_id)
        )
        if con.execute(stmt).first() is not None:
            new.append(str(row["event_id"]))
    return new


def event_counts(con: Connection) -> dict[str, int]:
    """Event type → events stored."""
    stmt = select(events.c.event, func.count()).group_by(events.c.event)
    return {event: count for event, count in con.execute(stmt)}
