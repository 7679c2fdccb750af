"""A/B variants: each recipient gets one, by a stable hash of campaign and customer.

The hash is independent of the holdout's (another salt), so the holdout and the variants
split customers independently; the same customer always gets the same variant.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from clvflow.project.campaign_spec import Variant


def unit_hash(campaign: str, customer_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by (salt, campaign, customer)."""
    digest = hashlib.sha256(f"{salt}\x1f{campaign}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variants(
    campaign: str, customer_ids: Sequence[str], variants: Sequence[Variant]
) -> list[str | None]:
    """The variant name of each customer (``None`` for every customer without variants)."""
    if not variants:
        return [None] * len(customer_ids)
    total = sum(v.weight for v in variants)
    bounds: list[float] = []
    running = 0.0
    for v in variants:
        running += v.weight / total
        bounds.append(running)
    names = [v.name for v in variants]
    last = len(names) - 1
    return [
        names[min(bisect.bisect_right(bounds, unit_hash(campaign, cid, "variant")), last)]
        for cid in customer_ids
    ]
