"""Claims: a run inserts a row per message it means to send; the unique rule on (campaign,
occurrence, customer) gives each row to exactly one of several runs racing for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, delete, literal, select, true

from clvflow.ledger.bulk import among, rows_table
from clvflow.ledger.database import insert_new, utcnow
from clvflow.ledger.schema import messages

CLAIM_FIELDS = ("occurrence", "customer_id", "email", "kind", "template", "variant", "locale")
UNIQUE_MESSAGE = ("campaign", "occurrence", "customer_id")
_CLAIM_TYPES = {c: messages.c[c].type for c in CLAIM_FIELDS}


@dataclass(frozen=True)
class Claim:
    """A message this run owns: send it, then record its outcome."""

    id: int
    occurrence: str
    customer_id: str
    email: str


def columns_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Message rows as the columns :func:`claim_columns` takes ("kind" defaults to
    marketing, the other fields to NULL)."""
    unknown = {k for row in rows for k in row} - set(CLAIM_FIELDS)
    if unknown:
        raise ValueError(f"unknown message fields: {sorted(unknown)}")
    return {
        c: [row.get(c, "marketing" if c == "kind" else None) for row in rows] for c in CLAIM_FIELDS
    }


def claim_columns(
    con: Connection,
    run_id: str,
    campaign: str,
    columns: Mapping[str, Sequence[Any]],
    status: str,
    at: dt.datetime | None = None,
) -> list[Claim]:
    """Insert one ``status`` row per message (``columns``: every field of ``CLAIM_FIELDS``,
    equally long), planned ``at`` (naive UTC; default now), where no row holds its key
    yet; return the rows this run holds with that status, in customer order."""
    if set(columns) != set(CLAIM_FIELDS):
        raise ValueError(f"message columns must be {sorted(CLAIM_FIELDS)}")
    if len(columns["customer_id"]):
        new = rows_table(con, "new_messages", _CLAIM_TYPES, columns)
        given = select(
            literal(campaign, messages.c.campaign.type),
            literal(status, messages.c.status.type),
            literal(run_id, messages.c.run_id.type),
            literal(at or utcnow(), messages.c.planned_at.type),
            *new.c,
        )
        con.execute(
            insert_new(con, messages, UNIQUE_MESSAGE).from_select(
                ["campaign", "status", "run_id", "planned_at", *CLAIM_FIELDS],
                # in key order, so that two transactions inserting the same keys on
                # PostgreSQL wait for each other in one order and never deadlock; SQLite
                # needs a WHERE before ON CONFLICT
                given.where(true()).order_by(new.c.occurrence, new.c.customer_id),
            )
        )
    won = con.execute(
        select(
            messages.c.id, messages.c.occurrence, messages.c.customer_id, messages.c.email
        ).where(
            messages.c.run_id == run_id,
            messages.c.status == status,
            messages.c.campaign == campaign,
        )
    ).all()
    claims = [Claim(*row) for row in won]
    claims.sort(key=attrgetter("customer_id"))
    return claims


def release(con: Connection, ids: Sequence[int]) -> int:
    """Delete the rows of ``ids`` still ``claimed``; returns how many."""
    return con.execute(
        delete(messages).where(messages.c.status == "claimed", among(con, messages.c.id, ids))
    ).rowcount
