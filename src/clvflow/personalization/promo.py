"""Unique single-use promo codes, one per recipient and campaign occurrence."""

from __future__ import annotations

import datetime as dt
import secrets

from clvflow.campaigns.params import PromoSpec

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L


def new_code(prefix: str, length: int = 8) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(length))
    return f"{prefix}-{body[:4]}-{body[4:]}"


def promo_row(
    spec: PromoSpec,
    campaign: str,
    occurrence: str,
    customer_id: str,
    currency: str,
    as_of: dt.datetime,
) -> dict[str, object]:
    """A ledger row for a fresh code; it expires at the end of the last valid day."""
    expires = dt.datetime.combine(
        as_of.date() + dt.timedelta(days=spec.valid_days), dt.time(23, 59, 59)
    )
    return {
        "code": new_code(spec.prefix),
        "campaign": campaign,
        "occurrence": occurrence,
        "customer_id": customer_id,
        "discount_percent": spec.discount_percent,
        "min_order": spec.min_order,
        "currency": currency,
        "expires_at": expires,
    }
