"""Unique single-use promo codes, one per recipient and campaign occurrence.

A run issues a code per message (``promo_row``) and keeps it in the ledger; the shop's
checkout honours it once (``redeem``: an atomic update that only succeeds for an issued,
unredeemed, unexpired code and an order that meets its minimum).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clvflow.errors import ClvflowError
from clvflow.project.campaign_spec import PromoSpec

if TYPE_CHECKING:
    from sqlalchemy import Engine

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L


# A random byte below this picks ALPHABET[byte % 31] with equal odds (rejection sampling):
# the bytes at or above it are deleted, the rest mapped to characters, both by
# ``bytes.translate`` over one read of the OS's random source for a whole batch of codes.
_UNBIASED = 256 - 256 % len(ALPHABET)
_REJECTED = bytes(range(_UNBIASED, 256))
_TO_ALPHABET = bytes(ord(ALPHABET[b % len(ALPHABET)]) for b in range(_UNBIASED)) + _REJECTED


def new_codes(prefix: str, count: int, length: int = 8) -> list[str]:
    """``count`` fresh codes ``PREFIX-XXXX-XXXX``, each character uniform over ALPHABET."""
    need = count * length
    chars = b""
    while len(chars) < need:
        raw = secrets.token_bytes(need - len(chars) + need // 16 + 8)
        chars += raw.translate(_TO_ALPHABET, _REJECTED)
    text = chars[:need].decode("ascii")
    half = length // 2
    return [
        f"{prefix}-{text[i : i + half]}-{text[i + half : i + length]}"
        for i in range(0, need, length)
    ]


def new_code(prefix: str, length: int = 8) -> str:
    return new_codes(prefix, 1, length)[0]


def promo_row(
    spec: PromoSpec,
    campaign: str,
    occurrence: str,
    customer_id: str,
    currency: str,
    as_of: dt.datetime,
) -> dict[str, object]:
    """A ledger row for a fresh code; it expires at the end of the last valid day."""
    return promo_rows(spec, campaign, [(occurrence, customer_id)], currency, as_of)[0]


def promo_rows(
    spec: PromoSpec,
    campaign: str,
    recipients: Sequence[tuple[str, str]],
    currency: str,
    as_of: dt.datetime,
) -> list[dict[str, object]]:
    """:func:`promo_row` for each (occurrence, customer_id), the codes drawn together."""
    expires = dt.datetime.combine(
        as_of.date() + dt.timedelta(days=spec.valid_days), dt.time(23, 59, 59)
    )
    codes = new_codes(spec.prefix, len(recipients))
    return [
        {
            "code": code,
            "campaign": campaign,
            "occurrence": occurrence,
            "customer_id": customer_id,
            "discount_percent": spec.discount_percent,
            "min_order": spec.min_order,
            "currency": currency,
            "expires_at": expires,
        }
        for code, (occurrence, customer_id) in zip(codes, recipients, strict=True)
    ]


def redeem(engine: Engine, code: str, order_total: float, when: dt.datetime) -> dict[str, Any]:
    """Mark ``code`` used by an order of ``order_total`` at ``when`` (shop time); once only.

    Two checkouts racing with the same code: the database lets one update win."""
    from sqlalchemy import select, update  # here: rendering a promo needs no database

    from clvflow.ledger.schema import promo_codes

    code = code.strip().upper()
    stmt = (
        update(promo_codes)
        .where(
            promo_codes.c.code == code,
            promo_codes.c.redeemed_at.is_(None),
            promo_codes.c.expires_at >= when,
            promo_codes.c.min_order <= order_total,
        )
        .values(redeemed_at=when)
    )
    with engine.begin() as con:
        won = con.execute(stmt).rowcount == 1
        row = con.execute(select(promo_codes).where(promo_codes.c.code == code)).mappings().first()
    if row is None:
        raise ClvflowError(f"promo code {code} was never issued", hint="check the spelling")
    found = dict(row)
    if won:
        return found
    if found["redeemed_at"] is not None:
        raise ClvflowError(
            f"promo code {code} was already used on {found['redeemed_at']:%Y-%m-%d %H:%M}",
            hint="each code can be used once",
        )
    if found["expires_at"] < when:
        raise ClvflowError(f"promo code {code} expired on {found['expires_at']:%Y-%m-%d}")
    raise ClvflowError(
        f"promo code {code} needs an order of at least {found['min_order']:g} "
        f"{found['currency']} (this one: {order_total:g})"
    )
