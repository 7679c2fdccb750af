"""Runs and their leases: a live run pushes its lease forward after every batch; once a
run's lease has expired while it is still ``running``, it counts as dead and the next run
of its campaign cleans up after it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from clvflow.ledger.database import utcnow
from clvflow.ledger.schema import messages, runs

STOPPED_WHILE_SENDING = "the run stopped while this message was being sent; it may have left"


def start_run(
    con: Connection,
    run_id: str,
    campaign: str,
    occurrence: str,
    as_of: dt.datetime,
    dry_run: bool,
    lease_seconds: float,
) -> None:
    now = utcnow()
    con.execute(
        insert(runs).values(
            run_id=run_id,
            campaign=campaign,
            occurrence=occurrence,
            as_of=as_of,
            dry_run=int(dry_run),
            status="running",
            started_at=now,
            lease_until=now + dt.timedelta(seconds=lease_seconds),
        )
    )


def renew_lease(con: Connection, run_id: str, lease_seconds: float) -> None:
    con.execute(
        update(runs)
        .where(runs.c.run_id == run_id)
        .values(lease_until=utcnow() + dt.timedelta(seconds=lease_seconds))
    )


def finish_run(con: Connection, run_id: str, status: str, summary: dict[str, Any]) -> None:
    con.execute(
        update(runs)
        .where(runs.c.run_id == run_id)
        .values(status=status, finished_at=utcnow(), summary=json.dumps(summary))
    )


def reconcile(con: Connection, campaign: str) -> tuple[int, int]:
    """Clean up after the dead runs of ``campaign``: their ``claimed`` rows are deleted (so
    they are planned again), their ``sending`` rows become ``unknown``, and the runs are
    marked failed. Returns (released, unknown)."""
    now = utcnow()
    dead = list(
        con.scalars(
            select(runs.c.run_id).where(
                runs.c.campaign == campaign,
                runs.c.status == "running",
                runs.c.lease_until < now,
            )
        )
    )
    if not dead:
        return 0, 0
    released = con.execute(
        delete(messages).where(messages.c.run_id.in_(dead), messages.c.status == "claimed")
    ).rowcount
    unknown = con.execute(
        update(messages)
        .where(messages.c.run_id.in_(dead), messages.c.status == "sending")
        .values(status="unknown", reason=STOPPED_WHILE_SENDING, finished_at=now)
    ).rowcount
    con.execute(
        update(runs).where(runs.c.run_id.in_(dead)).values(status="failed", finished_at=now)
    )
    return int(released), int(unknown)
