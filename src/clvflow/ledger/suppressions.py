"""Suppressions: addresses that get no marketing mail (unsubscribed, bounced, reported as
spam, or added by hand), kept lower-cased."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from clvflow.ledger.bulk import among
from clvflow.ledger.database import insert_new, utcnow
from clvflow.ledger.schema import suppressions


def suppressed(con: Connection, emails: Sequence[str]) -> dict[str, str]:
    """Lower-cased address → suppression reason, for those of ``emails`` suppressed."""
    lowered = {e.lower() for e in emails if e}
    if not lowered:
        return {}
    rows = con.execute(
        select(suppressions.c.email, suppressions.c.reason).where(
            among(con, suppressions.c.email, lowered)
        )
    )
    return {email: reason for email, reason in rows}


def suppress(
    con: Connection,
    email: str,
    reason: str,
    source: str,
    customer_id: str | None,
    campaign: str | None,
) -> bool:
    """Add a suppression; True if it is new."""
    stmt = (
        insert_new(con, suppressions, ["email"])
        .values(
            email=email.lower(),
            reason=reason,
            source=source,
            customer_id=customer_id,
            campaign=campaign,
            created_at=utcnow(),
        )
        .returning(suppressions.c.email)
    )
    return con.execute(stmt).first() is not None
