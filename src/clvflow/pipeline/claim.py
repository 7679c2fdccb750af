"""Claim: record the plan's skips and holdout, and claim the messages to send.

The ledger's unique key (campaign, occurrence, customer) gives each message to exactly one
run: of two runs racing, each customer goes to one of them. A dry run claims nothing and
numbers its messages below zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from clvflow.ledger.store import Claim, Ledger, Outcome
from clvflow.pipeline.job import Job
from clvflow.pipeline.summary import BatchResult
from clvflow.planning.plan import Plan

MAYBE_LEFT = (
    "an earlier attempt of this batch failed after handing it to the sender; it may have left"
)


def claim(
    ledger: Ledger, job: Job, plan: Plan, kind: str, lease_seconds: float, timezone: str
) -> list[Claim]:
    """Start the run in the ledger, record skips and holdout, claim ``plan.send`` (stamped
    on the run's clock): the claims this run won, sorted by customer."""
    if job.dry_run:
        columns = (_strings(plan.send, c) for c in ("occurrence", "customer_id", "email"))
        rows = enumerate(zip(*columns, strict=True))
        return [Claim(-i - 1, occ, cid, email) for i, (occ, cid, email) in rows]
    start(ledger, job, lease_seconds)
    now = job.clock(timezone)
    ledger.record_skips(job.run_id, job.name, plan.skips, now)
    ledger.claim_columns(job.run_id, job.name, _columns(plan.holdout, kind), "holdout", now)
    return ledger.claim_columns(job.run_id, job.name, _columns(plan.send, kind), at=now)


def start(ledger: Ledger, job: Job, lease_seconds: float) -> None:
    ledger.start_run(job.run_id, job.name, job.occurrence, job.as_of, False, lease_seconds)


def _strings(frame: pd.DataFrame, column: str) -> list[str]:
    return [str(value) for value in frame[column].tolist()]


def _columns(frame: pd.DataFrame, kind: str) -> dict[str, list[Any]]:
    """The ledger's columns for ``frame``'s messages (``Ledger.claim_columns``)."""
    locales = (
        [None if pd.isna(loc) else str(loc) for loc in frame["locale"].tolist()]
        if "locale" in frame
        else [None] * len(frame)
    )
    return {
        "occurrence": _strings(frame, "occurrence"),
        "customer_id": _strings(frame, "customer_id"),
        "email": _strings(frame, "email"),
        "kind": [kind] * len(frame),
        "template": frame["template"].tolist(),
        "variant": frame["variant"].tolist(),
        "locale": locales,
    }


def batches(claims: Sequence[Claim], size: int) -> list[list[Claim]]:
    return [list(claims[i : i + size]) for i in range(0, len(claims), size)]


def still_claimed(
    ledger: Ledger, batch: Sequence[Claim], at: dt.datetime | None = None
) -> tuple[list[Claim], BatchResult]:
    """A retried batch: only rows still ``claimed`` may go to the sender. Rows an earlier
    attempt left ``sending`` may have left: they become ``unknown`` (``at``, the run's
    clock), never re-sent; what it recorded is counted again in this attempt's result."""
    statuses = ledger.statuses_of([c.id for c in batch])
    fresh = [c for c in batch if statuses.get(c.id) == "claimed"]
    earlier = BatchResult()
    if len(fresh) == len(batch):
        return fresh, earlier
    maybe_left = {c.id for c in batch if statuses.get(c.id) == "sending"}
    ledger.record([Outcome(i, "unknown", MAYBE_LEFT) for i in sorted(maybe_left)], at=at)
    for item in batch:
        status = "unknown" if item.id in maybe_left else statuses.get(item.id)
        if status == "sent":
            earlier.sent += 1
        elif status == "failed":
            earlier.failed += 1
            earlier.failures["recorded by an earlier attempt"] += 1
        elif status == "unknown":
            earlier.unknown += 1
    return fresh, earlier
