"""What the console's cached results depend on, as short digests: the shop's data and the
segment files (sizes and modification times of the files; for a database, the current
``DATABASE_MINUTES``-minute period, as its tables cannot be stat'ed), the templates, and the
ledger's latest changes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import func, select

from clvflow.ledger.schema import messages, runs, suppressions
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project

DATABASE_MINUTES = 5


def _digest(parts: Iterable[object]) -> str:
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]


def _stats(paths: Iterable[Path]) -> list[str]:
    out = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            out.append(f"{path} missing")
            continue
        out.append(f"{path} {stat.st_size} {stat.st_mtime_ns}")
    return out


def data_fingerprint(project: Project) -> str:
    """The shop's data and the segment files."""
    data = project.config.data
    if data.url:
        sources: list[str] = [f"database {int(time.time() // (DATABASE_MINUTES * 60))}"]
    else:
        names = [data.customers, data.orders, data.order_items, data.products]
        sources = _stats(project.resolve(n) for n in names if n)
    segments = sorted(project.segments_dir.glob("*.y*ml")) if project.segments_dir.is_dir() else []
    return _digest([*sources, *_stats(segments)])


def templates_fingerprint(project: Project) -> str:
    folder = project.templates_dir
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return _digest(_stats(files))


def ledger_fingerprint(ledger: Ledger) -> str:
    """Changes when a message or a suppression is added, and when a run starts, records a
    batch (its lease moves on) or finishes."""
    latest_run = select(
        func.max(runs.c.started_at), func.max(runs.c.lease_until), func.max(runs.c.finished_at)
    )
    with ledger.engine.connect() as con:
        parts = [
            *con.execute(select(func.max(messages.c.id))).one(),
            *con.execute(select(func.count(), func.max(suppressions.c.created_at))).one(),
            *con.execute(latest_run).one(),
        ]
    return _digest(parts)
