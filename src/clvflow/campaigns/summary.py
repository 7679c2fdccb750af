"""What a campaign run did: counts for the terminal, the Prefect artifacts and the ledger."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


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

    def add(self, result: BatchResult) -> None:
        self.sent += result.sent
        self.failed += result.failed
        self.unknown += result.unknown
        self.failures.update(result.failures)
        self.by_locale.update(result.by_locale)
        self.by_variant.update(result.by_variant)
        self.failed_by_variant.update(result.failed_by_variant)
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
