"""Write the demo's simulated past into the ledger, as the runs would have recorded it:
times in naive UTC (runs' ``as_of`` and promo codes' expiry and use in shop time, as a
run writes them), in one transaction, once (the rows are keyed as real runs key them, so
a second write changes nothing)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, exists, func, insert, select, true

from clvflow.demo.history import History
from clvflow.demo.past_rows import RUN_PREFIX
from clvflow.demo.timing import to_utc
from clvflow.ledger.bulk import rows_table
from clvflow.ledger.database import insert_new
from clvflow.ledger.schema import journey_entries, messages, promo_codes, runs, skips
from clvflow.ledger.store import Ledger

LEASE = pd.Timedelta(minutes=1)  # a simulated run took this long


def recorded_past(ledger: Ledger) -> bool:
    """Whether the ledger already holds the simulated past."""
    with ledger.engine.connect() as con:
        return bool(con.scalar(select(exists().where(runs.c.run_id.startswith(RUN_PREFIX)))))


def past_start(ledger: Ledger) -> dt.datetime | None:
    """The ``as_of`` (shop time) of the first simulated run the ledger holds, if any."""
    stmt = select(func.min(runs.c.as_of)).where(runs.c.run_id.startswith(RUN_PREFIX))
    with ledger.engine.connect() as con:
        found = con.scalar(stmt)
    return found if isinstance(found, dt.datetime) else None


def _utc(frame: pd.DataFrame, columns: tuple[str, ...], timezone: str) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        out[column] = to_utc(out[column], timezone)
    return out


def _values(values: pd.Series) -> list[Any]:
    """A column as Python values, None where missing."""
    return values.astype(object).where(values.notna(), None).tolist()


def _insert(con: Connection, table: Table, frame: pd.DataFrame, key: tuple[str, ...]) -> None:
    """``INSERT … SELECT`` of ``frame``'s rows (one bound value), skipping rows whose
    ``key`` is there already."""
    columns = {str(c): _values(frame[c]) for c in frame.columns}
    types = {c: table.c[c].type for c in columns}
    given = rows_table(con, f"new_{table.name}", types, columns)
    stmt = insert_new(con, table, key) if key else insert(table)
    # SQLite needs a WHERE before ON CONFLICT
    con.execute(stmt.from_select(list(columns), select(*given.c).where(true())))


def record_history(ledger: Ledger, history: History, timezone: str) -> int:
    """Insert the simulated past (unless it is there); returns the messages written."""
    sent = _utc(history.table("messages"), ("planned_at", "finished_at"), timezone)
    sent["kind"] = "marketing"
    entries = _utc(history.table("entries"), ("entered_at", "step_at", "exited_at"), timezone)
    skipped = _utc(history.table("skips"), ("at",), timezone)
    codes = _utc(history.table("codes"), ("created_at",), timezone)
    ran = history.runs.copy()
    started = to_utc(ran["as_of"], timezone)
    ran["dry_run"], ran["status"] = 0, "finished"
    ran["started_at"], ran["finished_at"], ran["lease_until"] = (
        started,
        started + LEASE,
        started + LEASE,
    )
    tables: list[tuple[Table, pd.DataFrame, tuple[str, ...]]] = [
        (runs, ran, ("run_id",)),
        (messages, sent, ("campaign", "occurrence", "customer_id")),
        (journey_entries, entries, ("journey", "occurrence", "customer_id")),
        (skips, skipped, ()),
        (promo_codes, codes, ("code",)),
    ]
    with ledger.engine.begin() as con:
        for table, frame, key in tables:
            if not frame.empty:
                _insert(con, table, frame, key)
    return int((sent["status"] == "sent").sum())
