"""Outcomes: a claimed message turns ``sending`` just before it is handed to the sender, then
gets the one outcome it will keep (sent, failed with a reason, or unknown); members a run
does not send to are recorded as skips."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, update

from clvflow.ledger.bulk import among, rows_table
from clvflow.ledger.database import utcnow
from clvflow.ledger.schema import messages, skips

IN_HAND = ("claimed", "sending")  # no outcome yet


@dataclass(frozen=True)
class Outcome:
    message_id: int
    status: str  # sent | failed | unknown
    reason: str | None = None
    provider_id: str | None = None
    subject: str | None = None
    locale: str | None = None


_OUTCOME_TYPES = {
    "message_id": messages.c.id.type,
    "status": messages.c.status.type,
    "reason": messages.c.reason.type,
    "provider_id": messages.c.provider_id.type,
    "subject": messages.c.subject.type,
    "locale": messages.c.locale.type,
}


def set_status(con: Connection, ids: Sequence[int], old: str, new: str) -> None:
    """Messages ``ids`` that are ``old`` become ``new``."""
    con.execute(
        update(messages)
        .where(messages.c.status == old, among(con, messages.c.id, ids))
        .values(status=new)
    )


def mark_sending(
    con: Connection, ids: Sequence[int], run_id: str | None
) -> list[tuple[int, str, str]]:
    """Messages ``ids`` still ``claimed`` (by ``run_id``, when given) become ``sending``;
    the (id, occurrence, customer_id) of each one marked."""
    conditions = [messages.c.status == "claimed", among(con, messages.c.id, ids)]
    if run_id is not None:
        conditions.append(messages.c.run_id == run_id)
    marked = con.execute(
        update(messages)
        .where(*conditions)
        .values(status="sending")
        .returning(messages.c.id, messages.c.occurrence, messages.c.customer_id)
    )
    return [(int(i), str(o), str(c)) for i, o, c in marked]


def record(con: Connection, outcomes: Sequence[Outcome], at: dt.datetime | None = None) -> None:
    """Store the outcomes of messages still ``claimed`` or ``sending``, finished ``at``
    (naive UTC; default now); of several outcomes for one message, the first stands."""
    first: dict[int, Outcome] = {}
    for o in outcomes:
        first.setdefault(o.message_id, o)
    if not first:
        return
    given = rows_table(
        con,
        "outcomes",
        _OUTCOME_TYPES,
        {
            "message_id": list(first),
            "status": [o.status for o in first.values()],
            "reason": [o.reason for o in first.values()],
            "provider_id": [o.provider_id for o in first.values()],
            "subject": [o.subject for o in first.values()],
            "locale": [o.locale for o in first.values()],
        },
    )
    con.execute(
        update(messages)
        .where(messages.c.id == given.c.message_id, messages.c.status.in_(IN_HAND))
        .values(
            status=given.c.status,
            reason=given.c.reason,
            provider_id=given.c.provider_id,
            subject=given.c.subject,
            locale=given.c.locale,
            finished_at=at or utcnow(),
        )
    )


def record_skips(
    con: Connection,
    run_id: str,
    campaign: str,
    items: Sequence[tuple[str, str, str]],
    at: dt.datetime | None = None,
) -> None:
    """(occurrence, customer_id, reason) for every member ``run_id`` did not send to,
    ``at`` (naive UTC; default now)."""
    if not items:
        return
    con.execute(
        insert(skips).values(run_id=run_id, campaign=campaign, at=at or utcnow()),
        [{"occurrence": occ, "customer_id": cid, "reason": reason} for occ, cid, reason in items],
    )
