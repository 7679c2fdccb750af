"""The latest runs of each campaign and journey, from the ledger's ``runs`` table, with the
counts their summaries hold: sent, failed, waiting for the send window, skipped by reason.
A journey's own runs are listed (its steps' pipeline runs are part of them)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from clvflow.ledger.journeys import JOURNEY_RUN
from clvflow.ledger.schema import runs
from clvflow.ledger.store import Ledger


@dataclass
class LedgerRun:
    run_id: str
    campaign: str
    occurrence: str
    as_of: dt.datetime
    dry_run: bool
    status: str  # running | finished | failed
    started_at: dt.datetime  # naive UTC
    finished_at: dt.datetime | None
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    prefect_url: str | None = None  # the flow run in the Prefect UI, when known


def _counts(run: LedgerRun, summary: dict[str, Any]) -> None:
    run.sent = int(summary.get("sent") or 0)
    run.failed = int(summary.get("failed") or 0) + int(summary.get("unknown") or 0)
    steps = summary.get("steps")
    if isinstance(steps, dict):  # a journey's run: its steps' counts
        for step in steps.values():
            run.waiting += int(step.get("waiting") or 0)
            run.skipped.update({str(k): int(v) for k, v in (step.get("skipped") or {}).items()})
        return
    run.waiting = int(summary.get("waiting") or 0)
    run.skipped.update({str(k): int(v) for k, v in (summary.get("skipped") or {}).items()})


def latest_runs(ledger: Ledger, name: str, journey: bool, limit: int = 5) -> list[LedgerRun]:
    """The ``limit`` latest runs of campaign or journey ``name``, newest first."""
    stmt = select(runs).where(runs.c.campaign == name)
    if journey:
        stmt = stmt.where(runs.c.occurrence == JOURNEY_RUN)
    stmt = stmt.order_by(runs.c.started_at.desc()).limit(limit)
    with ledger.engine.connect() as con:
        rows = con.execute(stmt).mappings().all()
    out = []
    for row in rows:
        run = LedgerRun(
            run_id=row["run_id"],
            campaign=row["campaign"],
            occurrence=row["occurrence"],
            as_of=row["as_of"],
            dry_run=bool(row["dry_run"]),
            status=row["status"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )
        try:
            summary = json.loads(row["summary"]) if row["summary"] else {}
        except ValueError:
            summary = {}
        if isinstance(summary, dict):
            _counts(run, summary)
        out.append(run)
    return out
