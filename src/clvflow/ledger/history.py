"""Reading the messages the ledger holds: what planning must not repeat, what a retried
batch already handed over, and what the reports count."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from clvflow.ledger.bulk import among
from clvflow.ledger.schema import messages

IN_FLIGHT_OR_SENT = ("claimed", "sending", "sent", "unknown")


def existing(
    con: Connection, campaign: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(occurrence, customer) → status of the rows ``campaign`` already has for ``keys``."""
    wanted = set(keys)
    rows = con.execute(
        select(messages.c.occurrence, messages.c.customer_id, messages.c.status).where(
            messages.c.campaign == campaign,
            among(con, messages.c.customer_id, {customer for _, customer in wanted}),
        )
    )
    return {
        (occurrence, customer): status
        for occurrence, customer, status in rows
        if (occurrence, customer) in wanted
    }


def sent_since(
    con: Connection,
    customer_ids: Sequence[str],
    since: dt.datetime,
    campaign: str | None,
    statuses: Sequence[str] = IN_FLIGHT_OR_SENT,
) -> dict[str, int]:
    """Customer → marketing messages sent (or maybe sent; or of other ``statuses``) since
    ``since`` (naive UTC), in ``campaign`` or in any."""
    stmt = (
        select(messages.c.customer_id, func.count())
        .where(
            messages.c.status.in_(list(statuses)),
            messages.c.kind == "marketing",
            messages.c.planned_at >= since,
            among(con, messages.c.customer_id, set(customer_ids)),
        )
        .group_by(messages.c.customer_id)
    )
    if campaign is not None:
        stmt = stmt.where(messages.c.campaign == campaign)
    return {customer: count for customer, count in con.execute(stmt)}


def statuses_of(con: Connection, ids: Sequence[int]) -> dict[int, str]:
    """Message id → status."""
    rows = con.execute(
        select(messages.c.id, messages.c.status).where(among(con, messages.c.id, ids))
    )
    return {id_: status for id_, status in rows}


def status_counts(con: Connection, campaign: str | None) -> dict[str, int]:
    stmt = select(messages.c.status, func.count()).group_by(messages.c.status)
    if campaign is not None:
        stmt = stmt.where(messages.c.campaign == campaign)
    return {status: count for status, count in con.execute(stmt)}


def message_email(con: Connection, customer_id: str, campaign: str | None) -> str | None:
    """The address of the latest message (not a holdout) to ``customer_id``."""
    stmt = (
        select(messages.c.email)
        .where(messages.c.customer_id == customer_id, messages.c.status != "holdout")
        .order_by(messages.c.planned_at.desc(), messages.c.id.desc())
        .limit(1)
    )
    if campaign is not None:
        stmt = stmt.where(messages.c.campaign == campaign)
    email: str | None = con.scalar(stmt)
    return email


def message_by_id(con: Connection, message_id: int) -> dict[str, Any] | None:
    row = con.execute(select(messages).where(messages.c.id == message_id)).mappings().first()
    return None if row is None else dict(row)
