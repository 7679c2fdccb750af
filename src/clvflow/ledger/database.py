"""The ledger's database: the engine with its settings, the tables created on first use,
the ledger's clock, and the helpers its statements share."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from clvflow.ledger.schema import metadata


def utcnow() -> dt.datetime:
    """Now, as the ledger stores every time: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with the ledger's tables in place."""
    sqlite_db = make_url(url).get_backend_name() == "sqlite"
    engine = create_engine(
        url,
        pool_pre_ping=not sqlite_db,  # a database server may drop connections
        # several processes may share one SQLite file: wait for the write lock
        connect_args={"timeout": 60} if sqlite_db else {},
    )
    if sqlite_db:
        event.listen(engine, "connect", _sqlite_pragmas)
    create_tables(engine)
    return engine


def create_tables(engine: Engine) -> None:
    """Create missing tables; two workers starting at once may race, so retry."""
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer and a commit costs one fsync, not three;
    ``synchronous=FULL`` keeps every commit durable (nothing is traded for speed)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def insert_new(
    con: Connection, table: Table, key: Sequence[str]
) -> sqlite.Insert | postgresql.Insert:
    """``INSERT … ON CONFLICT (key) DO NOTHING`` into ``table``: the construct lives in each
    dialect's module."""
    if con.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
