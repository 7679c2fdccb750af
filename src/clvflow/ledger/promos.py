"""Promo codes: one per recipient of a campaign occurrence, stored before the message that
carries it leaves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, literal, select

from clvflow.ledger.bulk import among, rows_table
from clvflow.ledger.database import utcnow
from clvflow.ledger.schema import promo_codes

PROMO_FIELDS = (
    "code", "campaign", "occurrence", "customer_id", "discount_percent", "min_order",
    "currency", "expires_at", "created_at",
)  # fmt: skip


def insert_codes(con: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store issued codes (``PROMO_FIELDS``; ``created_at`` is now, whatever a row says)."""
    if not rows:
        return
    unknown = {k for row in rows for k in row} - set(PROMO_FIELDS)
    if unknown:
        raise ValueError(f"unknown promo code fields: {sorted(unknown)}")
    fields = [c for c in PROMO_FIELDS if c != "created_at"]
    new = rows_table(
        con,
        "new_codes",
        {c: promo_codes.c[c].type for c in fields},
        {c: [row.get(c) for row in rows] for c in fields},
    )
    created = literal(utcnow(), promo_codes.c.created_at.type)
    con.execute(insert(promo_codes).from_select([*fields, "created_at"], select(*new.c, created)))


def promo_codes_for(
    con: Connection, campaign: str, occurrence: str, customer_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Customer → the code (every column) already issued to them for (campaign, occurrence)."""
    rows = con.execute(
        select(promo_codes).where(
            promo_codes.c.campaign == campaign,
            promo_codes.c.occurrence == occurrence,
            among(con, promo_codes.c.customer_id, set(customer_ids)),
        )
    ).mappings()
    return {row["customer_id"]: dict(row) for row in rows}


def all_promo_codes(con: Connection, campaign: str | None) -> list[dict[str, Any]]:
    """Every issued code, oldest first."""
    stmt = select(promo_codes).order_by(promo_codes.c.created_at, promo_codes.c.code)
    if campaign is not None:
        stmt = stmt.where(promo_codes.c.campaign == campaign)
    return [dict(row) for row in con.execute(stmt).mappings()]
