"""Who is held out of a campaign or a journey to measure its effect.

How many: :meth:`clvflow.measurement.settings.MeasurementConfig.holdout_for` (the spec's
own ``holdout_percent``, else the shop-wide default; never for transactional mail).

Who: a stable hash of the campaign's name and the customer puts each customer on the same
side at every run, so the control group stays the control group. A campaign or journey
that sends once per order holds out orders instead (the hash also covers the order): a
customer with many orders is then in both groups, each order on one side, so the groups
compare orders that were chosen independently of each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def in_holdout(
    campaign: str, customer_id: str, percent: float, occurrence: str | None = None
) -> bool:
    """Stable: the same campaign, customer (and order, for a per-order campaign) always
    fall on the same side."""
    if percent <= 0:
        return False
    key = f"{campaign}\x1f{customer_id}"
    if occurrence is not None:
        key += f"\x1f{occurrence}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < percent / 100.0


def held_out(
    campaign: str,
    customer_ids: Sequence[str],
    percent: float,
    occurrences: Sequence[str] | None = None,
) -> npt.NDArray[np.bool_]:
    """:func:`in_holdout` for many customers (with ``occurrences``: one order each)."""
    if percent <= 0 or not len(customer_ids):
        return np.zeros(len(customer_ids), dtype=np.bool_)
    if occurrences is None:
        flags = [in_holdout(campaign, str(c), percent) for c in customer_ids]
    else:
        pairs = zip(customer_ids, occurrences, strict=True)
        flags = [in_holdout(campaign, str(c), percent, str(o)) for c, o in pairs]
    return np.asarray(flags, dtype=np.bool_)
