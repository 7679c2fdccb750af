"""Where a journey stands, from the ledger: per step how many entries wait there, how many
messages were sent, skipped (by reason) or failed, how many entries exited there (by
reason); and one customer's path with dates."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clvflow.data.sources import ShopData
from clvflow.journeys.catalog import Journey
from clvflow.ledger import journeys as state
from clvflow.ledger.store import Ledger
from clvflow.measurement.attribution import attribute
from clvflow.measurement.sends import TREATED, read_sends


@dataclass
class StepStatus:
    name: str
    waiting: int = 0  # entries at this step, not exited
    sent: int = 0
    failed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    converted: int | None = None  # recipients with an order in the attribution window


@dataclass
class JourneyStatus:
    journey: str
    entries: int = 0
    holdout: int = 0
    completed: int = 0
    steps: list[StepStatus] = field(default_factory=list)


def journey_status(
    ledger: Ledger, journey: Journey, data: ShopData | None = None, default_locale: str = "en"
) -> JourneyStatus:
    """The journey's standing; with the shop's ``data``, each step's conversions too."""
    names = [s.name for s in journey.spec.steps]
    status = JourneyStatus(journey.name, steps=[StepStatus(n) for n in names])
    with ledger.engine.connect() as con:
        entries = state.entry_counts(con, journey.name)
        messages = state.step_counts(con, journey.name, names)
    by_name = {s.name: s for s in status.steps}
    for step, reason, holdout, count in entries:
        status.entries += count
        if holdout:
            status.holdout += count
        elif reason == "completed":
            status.completed += count
        elif step < len(names):
            at = status.steps[step]
            if reason is None:
                at.waiting += count
            else:
                at.exited[reason] += count
    for step_name, message_status, reason, count in messages:
        target = by_name.get(step_name)
        if target is None:
            continue
        if message_status == "sent":
            target.sent += count
        elif message_status == "skipped":
            target.skipped[reason or "skipped"] += count
        elif message_status in ("failed", "unknown"):
            target.failed += count
    if data is not None:
        converted = conversions(data, ledger, journey, default_locale)
        for at in status.steps:
            at.converted = converted.get(at.name, 0)
    return status


def conversions(
    data: ShopData, ledger: Ledger, journey: Journey, default_locale: str
) -> dict[str, int]:
    """Step → recipients with an order within the journey's attribution window after the
    step's send (an order in the windows of two steps counts for the later one)."""
    sends = read_sends(ledger, dt.datetime(1970, 1, 1), campaign=journey.name)
    sends = sends[sends["group"] == TREATED]
    if sends.empty:
        return {}
    window = dt.timedelta(days=journey.spec.attribution_days)
    cells = attribute(
        data, sends, {journey.name: window}, timezone=data.timezone,
        default_locale=default_locale, default_window=window,
    )  # fmt: skip
    steps = cells["occurrence"].astype(str).str.rsplit("/", n=1).str[-1]
    totals = cells.assign(step=steps).groupby("step")["conversions"].sum()
    return {str(step): int(n) for step, n in totals.items()}


def customer_path(ledger: Ledger, journey: Journey, customer_id: str) -> dict[str, Any]:
    """Their entries and step messages (``clvflow journeys show NAME --customer ID``)."""
    with ledger.engine.connect() as con:
        return state.customer_path(con, journey.name, customer_id)
