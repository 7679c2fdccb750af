"""What a run did: counts for the terminal, the Prefect artifacts and the ledger."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clvflow.delivery.base import SendResult
    from clvflow.ledger.store import Claim
    from clvflow.planning.plan import Plan


@dataclass
class BatchResult:
    """The outcome of one batch; a batch may run in another process than its flow."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    by_locale: Counter[str] = field(default_factory=Counter)
    by_variant: Counter[str] = field(default_factory=Counter)
    failed_by_variant: Counter[str] = field(default_factory=Counter)
    pid: int = field(default_factory=os.getpid)

    def add(self, other: BatchResult) -> None:
        """Count ``other`` in too (an earlier attempt of the same batch, say)."""
        add_counts(self, other)


@dataclass
class RunSummary:
    campaign: str
    run_id: str
    as_of: dt.datetime
    dry_run: bool
    segment: str
    occurrence: str = ""
    members: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    holdout: int = 0
    waiting: int = 0
    planned: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    earlier_unknown: int = 0
    released: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    by_locale: Counter[str] = field(default_factory=Counter)
    by_variant: Counter[str] = field(default_factory=Counter)
    failed_by_variant: Counter[str] = field(default_factory=Counter)
    planned_by_variant: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)  # variant (or "") → file
    workers: set[int] = field(default_factory=set)

    def planned_as(self, plan: Plan) -> None:
        """The plan's counts: members, skips by reason, holdout, waiting, planned."""
        self.members = plan.members
        self.skipped = plan.skipped_by_reason()
        self.holdout = len(plan.holdout)
        self.waiting = plan.waiting
        self.planned = len(plan.send)
        self.planned_by_variant = Counter(v for v in plan.send["variant"].tolist() if v)

    def claimed(self, plan: Plan, claims: Sequence[Claim]) -> None:
        """Members another run claimed first are skipped by this one."""
        lost = len(plan.send) - len(claims)
        if lost:
            self.skipped["claimed_by_another_run"] += lost
            self.planned -= lost
            won = {c.customer_id for c in claims}
            self.planned_by_variant = Counter(
                v
                for cid, v in zip(
                    plan.send["customer_id"].tolist(), plan.send["variant"].tolist(), strict=True
                )
                if v and cid in won
            )

    def count(self, results: Sequence[SendResult]) -> None:
        """Outcomes not part of a batch result (those before the backend refused the run)."""
        for result in results:
            if result.status in ("sent", "failed", "unknown"):
                setattr(self, result.status, getattr(self, result.status) + 1)

    def add(self, result: BatchResult) -> None:
        add_counts(self, result)
        self.workers.add(result.pid)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "segment": self.segment,
            "occurrence": self.occurrence,
            "members": self.members,
            "skipped": dict(self.skipped),
            "holdout": self.holdout,
            "waiting": self.waiting,
            "planned": self.planned,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "earlier_unknown": self.earlier_unknown,
            "released": self.released,
            "failures": dict(self.failures),
            "by_locale": dict(self.by_locale),
            "by_variant": dict(self.by_variant),
            "failed_by_variant": dict(self.failed_by_variant),
            "planned_by_variant": dict(self.planned_by_variant),
            "samples": dict(self.samples),
            "workers": len(self.workers),
        }


def add_counts(into: BatchResult | RunSummary, other: BatchResult) -> None:
    """Add ``other``'s outcomes by status, failure reason, locale and variant to ``into``."""
    into.sent += other.sent
    into.failed += other.failed
    into.unknown += other.unknown
    into.failures.update(other.failures)
    into.by_locale.update(other.by_locale)
    into.by_variant.update(other.by_variant)
    into.failed_by_variant.update(other.failed_by_variant)
