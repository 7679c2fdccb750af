"""The demo shop's simulated past: how far back it goes, and the true effect of each of
its campaigns and journeys, which ``clvflow report`` should find again.

An effect is the absolute uplift of the conversion rate the report measures: for a
campaign, recipients with an order within its attribution window after the send, against
its holdout; for a journey, entries with an order within its window after entering
(its steps' waits plus its attribution days; 30 days plus those for a journey timed on
dates), against its held-out entries. ``responds_to`` names the journey step whose email
brings the extra orders.
"""

from __future__ import annotations

from dataclasses import dataclass

HISTORY_WEEKS = 25  # the simulated past starts this long before the demo's reference day


@dataclass(frozen=True)
class TrueEffect:
    uplift: float  # absolute uplift of the conversion rate: 0.06 is +6 percentage points
    responds_to: str | None = None  # a journey's step; None: a campaign's own send


TRUE_EFFECTS: dict[str, TrueEffect] = {
    "win-back-series": TrueEffect(0.08, responds_to="offer"),
    "post-purchase": TrueEffect(0.04, responds_to="cross-sell"),
    "points-expiry": TrueEffect(0.07),
    "vip-thanks": TrueEffect(0.0),
    "wedding": TrueEffect(0.0),
}
