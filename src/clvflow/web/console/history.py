"""One customer in the ledger: every message (campaign, journey step, status, dates), the
campaign runs that skipped them and why, and where they stand in each journey."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from clvflow.journeys.catalog import Journey
from clvflow.journeys.status import customer_path
from clvflow.ledger.schema import messages, skips
from clvflow.ledger.store import Ledger

LIMIT = 500


@dataclass(frozen=True)
class Position:
    journey: str
    occurrence: str
    entered_at: dt.datetime
    holdout: bool
    at_step: str  # the next step to decide, or "done"
    exited_at: dt.datetime | None
    exit_reason: str | None


def customer_messages(ledger: Ledger, customer_id: str) -> list[dict[str, Any]]:
    """Their messages, newest first, each with ``step`` (a journey's step, else '')."""
    stmt = (
        select(messages)
        .where(messages.c.customer_id == customer_id)
        .order_by(messages.c.planned_at.desc(), messages.c.id.desc())
        .limit(LIMIT)
    )
    with ledger.engine.connect() as con:
        rows = [dict(r) for r in con.execute(stmt).mappings()]
    for row in rows:
        occurrence = str(row["occurrence"])
        row["step"] = occurrence.rsplit("/", 1)[1] if "/" in occurrence else ""
    return rows


def customer_skips(ledger: Ledger, customer_id: str) -> list[dict[str, Any]]:
    """The runs that left them out, newest first (campaign, occurrence, reason, at)."""
    stmt = (
        select(skips.c.campaign, skips.c.occurrence, skips.c.reason, skips.c.at)
        .where(skips.c.customer_id == customer_id)
        .order_by(skips.c.at.desc(), skips.c.id.desc())
        .limit(LIMIT)
    )
    with ledger.engine.connect() as con:
        return [dict(r) for r in con.execute(stmt).mappings()]


def positions(ledger: Ledger, journeys: list[Journey], customer_id: str) -> list[Position]:
    out = []
    for journey in journeys:
        names = [s.name for s in journey.spec.steps]
        for entry in customer_path(ledger, journey, customer_id)["entries"]:
            step = int(entry["step"])
            out.append(
                Position(
                    journey=journey.name,
                    occurrence=str(entry["occurrence"]),
                    entered_at=entry["entered_at"],
                    holdout=bool(entry["holdout"]),
                    at_step=names[step] if step < len(names) else "done",
                    exited_at=entry["exited_at"],
                    exit_reason=entry["exit_reason"],
                )
            )
    return out
