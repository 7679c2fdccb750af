"""What a journey run did, per step: for the terminal, the Prefect artifacts and the ledger."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clvflow.pipeline.summary import RunSummary

# the pipeline's skip reasons as a journey names them
_REASONS = {"frequency_cap": "capped", "claimed_by_another_run": "claimed_by_another_run"}


@dataclass
class StepCounts:
    due: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    waiting: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)

    def add_run(self, run: RunSummary) -> None:
        """A step's pipeline run: outcomes, and what it left for a later run."""
        self.sent += run.sent
        self.failed += run.failed
        self.unknown += run.unknown
        for reason, count in run.skipped.items():
            self.skipped[_REASONS.get(reason, reason)] += count
        if run.waiting:
            self.skipped["outside_send_window"] += run.waiting

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "waiting": self.waiting,
            "skipped": dict(self.skipped),
            "exited": dict(self.exited),
        }


@dataclass
class JourneySummary:
    journey: str
    run_id: str
    as_of: dt.datetime
    dry_run: bool
    entered: int = 0
    held_out: int = 0
    steps: dict[str, StepCounts] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)  # the steps' pipeline runs

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.steps.values())

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.steps.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "entered": self.entered,
            "held_out": self.held_out,
            "sent": self.sent,
            "failed": self.failed,
            "steps": {name: counts.as_dict() for name, counts in self.steps.items()},
        }
