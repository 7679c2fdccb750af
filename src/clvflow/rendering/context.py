"""The names a template sees.

``customer`` (all attributes, derived ones included), ``shop``, ``campaign``, ``order`` (the
triggering or latest order, with ``items``; ``None`` without orders), ``recommendations``
(products for upsell), ``promo`` (``code``, ``discount_percent``, ``min_order``,
``expires_at``; ``None`` unless the campaign has a promo), ``unsubscribe_url``, ``now``,
``locale`` and ``currency`` (used by the ``money``, ``date``, ``number`` filters).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd

from clvflow.personalization.orders import OrderView
from clvflow.project.config import ShopConfig

_PLAIN = frozenset({str, int, bool, dt.datetime, dt.date})
_EPOCH = dt.datetime(1970, 1, 1)


def plain(value: Any) -> Any:
    """pandas/numpy scalars → plain Python; missing → None."""
    kind = type(value)
    if kind in _PLAIN:  # the common cases first: per attribute of every message
        return value
    if kind is float:
        return None if math.isnan(value) else value
    if kind is pd.Timestamp and value.tzinfo is None:
        try:  # what to_pydatetime gives (nanoseconds dropped), without pandas' conversion
            return _EPOCH + dt.timedelta(microseconds=value.value // 1000)
        except (OverflowError, ValueError):
            return value.to_pydatetime()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return plain(value.item())
        except (ValueError, AttributeError):
            return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def shop_context(shop: ShopConfig) -> dict[str, Any]:
    return {
        "name": shop.name,
        "url": shop.url,
        "email": shop.reply_to or shop.from_email,
        "postal_address": shop.postal_address,
        "currency": shop.currency,
    }


def message_context(
    *,
    customer: dict[str, Any],
    shop: dict[str, Any],
    campaign: dict[str, Any],
    order: OrderView | None,
    recommendations: list[dict[str, Any]],
    promo: dict[str, Any] | None,
    unsubscribe_url: str,
    locale: str,
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "customer": {k: v if type(v) in _PLAIN else plain(v) for k, v in customer.items()},
        "shop": shop,
        "campaign": campaign,
        "order": order,
        "recommendations": recommendations,
        "promo": promo,
        "unsubscribe_url": unsubscribe_url,
        "locale": locale,
        "currency": (order.currency if order else None) or shop["currency"],
        "now": now,
    }
