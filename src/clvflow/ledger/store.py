"""The ledger's operations. Sending follows claim → mark sending → send → record:

1. ``claim`` inserts a ``claimed`` row per message; the unique rule on (campaign,
   occurrence, customer) means that of two runs racing, exactly one gets each row.
2. Just before a batch goes to the sender, ``mark_sending`` flips its rows to ``sending``.
3. ``record`` stores each outcome: sent, failed (with reason), or unknown (a timeout after
   the request left: it may have been delivered).

A run holds a lease it renews after every batch. When a run dies (crash, SIGKILL), the next
run of the campaign ``reconcile``s once the lease has expired: ``claimed`` rows were never
handed over, so they are released and planned again; ``sending`` rows become ``unknown`` and
are reported, never re-sent blindly.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson
from sqlalchemy import DateTime, Engine, create_engine, delete, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from clvflow.errors import LedgerError
from clvflow.ledger import schema
from clvflow.ledger.schema import events, messages, promo_codes, runs, skips, suppressions

CHUNK = 500
_CLAIM_FIELDS = ("occurrence", "customer_id", "email", "kind", "template", "variant", "locale")
_CLAIM_COLUMNS = ("campaign", "status", "run_id", "planned_at", "reason", *_CLAIM_FIELDS)
_PROMO_COLUMNS = (
    "code", "campaign", "occurrence", "customer_id", "discount_percent", "min_order",
    "currency", "expires_at", "created_at",
)  # fmt: skip
# Writes of many rows are one statement per chunk (a multi-row VALUES), not an executemany:
# the driver lets go of the GIL for every row it steps, and with another thread busy (the
# renderer, the lookup tables) each row then waits for the GIL to come back; a claim of
# 100,000 rows beside a busy thread took minutes. One statement is one hand-over.
WRITE_VARIABLES = 30_000  # bound values per statement (SQLite: 32,766; PostgreSQL: 65,535)
IN_FLIGHT_OR_SENT = ("claimed", "sending", "sent", "unknown")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _values(
    rows: Sequence[tuple[Any, ...]], mark: str, reserved: int = 0
) -> Iterable[tuple[str, tuple[Any, ...]]]:
    """``rows`` as multi-row ``VALUES`` lists, a chunk at a time (``WRITE_VARIABLES`` bound
    values each, ``reserved`` of them kept for the rest of the statement): the list's text
    and its values, flat."""
    if not rows:
        return
    width = len(rows[0])
    row = f"({', '.join([mark] * width)})"
    for chunk in _chunks(rows, (WRITE_VARIABLES - reserved) // width):
        yield ", ".join([row] * len(chunk)), tuple(value for each in chunk for value in each)


@dataclass(frozen=True)
class Claim:
    """A message this run owns: send it, then record its outcome."""

    id: int
    occurrence: str
    customer_id: str
    email: str


@dataclass(frozen=True)
class Outcome:
    message_id: int
    status: str  # sent | failed
    reason: str | None = None
    provider_id: str | None = None
    subject: str | None = None
    locale: str | None = None


class Ledger:
    """One ledger database (SQLAlchemy URL: SQLite by default, PostgreSQL for several workers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        sqlite_db = url.startswith("sqlite")
        try:
            self.engine: Engine = create_engine(
                url,
                pool_pre_ping=not sqlite_db,  # a database server may drop connections
                # several processes may share one SQLite file: wait for the write lock
                connect_args={"timeout": 60} if sqlite_db else {},
            )
            if sqlite_db:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            dialect = self.engine.dialect
            self._time_processor = DateTime().bind_processor(dialect)
            # how SQLAlchemy binds a time it compares with (SQLite: text, PostgreSQL: as is)
            self._compared_time = DateTime().dialect_impl(dialect).bind_processor(dialect)
            # promo_codes' columns and how each is read (SQLite hands times back as text;
            # PostgreSQL's driver types them itself)
            self._promo_columns = (
                [c.name for c in promo_codes.columns],
                [
                    c.type.dialect_impl(dialect).result_processor(dialect, None)
                    if sqlite_db
                    else None
                    for c in promo_codes.columns
                ],
            )
            self._create_schema()
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"cannot open the ledger: {type(exc).__name__}: {exc.args[0] if exc.args else ''}",
                hint="check 'ledger:' in clvflow.yaml or CLVFLOW_LEDGER_URL",
            ) from None

    def _create_schema(self) -> None:
        """Create missing tables; two workers starting at once may race, so retry."""
        for attempt in range(5):
            try:
                schema.metadata.create_all(self.engine)
                return
            except (OperationalError, ProgrammingError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # -- runs ---------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        campaign: str,
        occurrence: str,
        as_of: dt.datetime,
        dry_run: bool,
        lease_seconds: float,
    ) -> None:
        now = utcnow()
        with self.engine.begin() as con:
            con.execute(
                runs.insert().values(
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

    def renew_lease(self, run_id: str, lease_seconds: float) -> None:
        with self.engine.begin() as con:
            self._renew(con, run_id, lease_seconds)

    @staticmethod
    def _renew(con: Any, run_id: str, lease_seconds: float) -> None:
        con.execute(
            update(runs)
            .where(runs.c.run_id == run_id)
            .values(lease_until=utcnow() + dt.timedelta(seconds=lease_seconds))
        )

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.engine.begin() as con:
            con.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status=status, finished_at=utcnow(), summary=json.dumps(summary))
            )

    # -- what stops a message -----------------------------------------------------------
    def suppressed(self, emails: Sequence[str]) -> dict[str, str]:
        """Lower-cased address → suppression reason, for the given addresses."""
        lowered = list({e.lower() for e in emails if e})
        with self.engine.connect() as con:
            rows = self._keyed(
                con, ("email", "reason"), "FROM suppressions WHERE", "email", lowered
            )
        return {str(email): str(reason) for email, reason in rows}

    def _keyed(
        self,
        con: Any,
        columns: Sequence[str],
        rest: str,
        key: str,
        keys: Sequence[Any],
        params: tuple[Any, ...] = (),
        tail: str = "",
    ) -> list[tuple[Any, ...]]:
        """The rows of ``SELECT columns rest [params] AND? key IN keys tail``: the keys go as
        one value (SQLite: a JSON array, PostgreSQL: an array), so 100,000 of them cost one
        statement and no SQL text per key. ``rest`` ends in WHERE or AND."""
        if not keys:
            return []
        test, packed = self._among(key, keys)
        return self._rows(con, columns, f"{rest} {test} {tail}", (*params, packed))

    def _among(self, key: str, keys: Sequence[Any]) -> tuple[str, Any]:
        """``key IN keys`` as SQL with one bound value, and that value."""
        if self.engine.dialect.name == "sqlite":
            return f"{key} IN (SELECT value FROM json_each(?))", orjson.dumps(list(keys)).decode()
        return f"{key} = ANY(%s)", list(keys)

    def _set_status(
        self, ids: Sequence[int], old: str, new: str, codes: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Messages ``ids`` that are ``old`` become ``new``, in one statement; ``codes``
        (promo code rows) are stored in the same transaction."""
        if not ids and not codes:
            return
        with self.engine.begin() as con:
            if ids:
                test, packed = self._among("id", ids)
                con.exec_driver_sql(
                    f"UPDATE messages SET status = '{new}' WHERE status = '{old}' AND {test}",
                    (packed,),
                )
            self._insert_codes(con, codes)

    def suppress(
        self,
        email: str,
        reason: str,
        source: str,
        customer_id: str | None = None,
        campaign: str | None = None,
    ) -> bool:
        """Add a suppression; True if it is new."""
        stmt = (
            self._insert(suppressions)
            .values(
                email=email.lower(),
                reason=reason,
                source=source,
                customer_id=customer_id,
                campaign=campaign,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(suppressions.c.email)
        )
        with self.engine.begin() as con:
            return con.execute(stmt).first() is not None

    def existing(
        self, campaign: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """(occurrence, customer) → status of rows already in the ledger for ``campaign``."""
        wanted = set(keys)
        customers = list({c for _, c in wanted})
        with self.engine.connect() as con:
            rows = self._keyed(
                con,
                ("occurrence", "customer_id", "status"),
                f"FROM messages WHERE campaign = {self._mark} AND",
                "customer_id",
                customers,
                (campaign,),
            )
        found = (((str(occ), str(cid)), str(status)) for occ, cid, status in rows)
        return {key: status for key, status in found if key in wanted}

    def sent_since(
        self, customer_ids: Sequence[str], since: dt.datetime, campaign: str | None = None
    ) -> dict[str, int]:
        """Customer → marketing messages sent (or maybe sent) since ``since`` (naive UTC,
        like every time the ledger writes)."""
        mark = self._mark
        statuses = ", ".join(f"'{s}'" for s in IN_FLIGHT_OR_SENT)
        rest = (
            f"FROM messages WHERE status IN ({statuses}) AND kind = 'marketing' "
            f"AND planned_at >= {mark} AND "
        )
        params: tuple[Any, ...] = (self._since(since),)
        if campaign is not None:
            rest += f"campaign = {mark} AND "
            params += (campaign,)
        with self.engine.connect() as con:
            rows = self._keyed(
                con,
                ("customer_id", "count(*)"),
                rest,
                "customer_id",
                list(customer_ids),
                params,
                "GROUP BY customer_id",
            )
        return {str(cid): int(n) for cid, n in rows}

    # -- claim, record ------------------------------------------------------------------
    def claim(
        self,
        run_id: str,
        campaign: str,
        rows: Sequence[dict[str, Any]],
        status: str = "claimed",
    ) -> list[Claim]:
        """Insert rows (occurrence, customer_id, email, kind, template, variant, locale);
        return those this run won, in customer order."""
        unknown = {k for row in rows for k in row} - set(_CLAIM_FIELDS)
        if unknown:
            raise ValueError(f"unknown message fields: {sorted(unknown)}")
        columns = {  # "kind" defaults to marketing, the rest to NULL
            c: [row.get(c, "marketing" if c == "kind" else None) for row in rows]
            for c in _CLAIM_FIELDS
        }
        return self.claim_columns(run_id, campaign, columns, status)

    def claim_columns(
        self,
        run_id: str,
        campaign: str,
        columns: Mapping[str, Sequence[Any]],
        status: str = "claimed",
    ) -> list[Claim]:
        """:meth:`claim` for rows given column by column (every field of ``_CLAIM_FIELDS``,
        equally long): a tenth of the cost of a tuple per row and column."""
        if set(columns) != set(_CLAIM_FIELDS):
            raise ValueError(f"message columns must be {sorted(_CLAIM_FIELDS)}")
        count = len(columns["customer_id"])
        now = self._time(utcnow())
        fixed = {
            "campaign": campaign, "status": status, "run_id": run_id, "planned_at": now,
            "reason": None,
        }  # fmt: skip
        params = list(
            zip(
                *(repeat(fixed[c], count) if c in fixed else columns[c] for c in _CLAIM_COLUMNS),
                strict=True,
            )
        )
        mark = self._mark
        won_sql = f"FROM messages WHERE run_id = {mark} AND status = {mark} AND campaign = {mark}"
        with self.engine.begin() as con:
            for values, flat in _values(params, mark):
                con.exec_driver_sql(
                    f"INSERT INTO messages ({', '.join(_CLAIM_COLUMNS)}) VALUES {values} "
                    "ON CONFLICT (campaign, occurrence, customer_id) DO NOTHING",
                    flat,
                )
            won = self._rows(
                con,
                ("id", "occurrence", "customer_id", "email"),
                won_sql,
                (run_id, status, campaign),
            )
            claims = [Claim(int(i), str(occ), str(cid), str(email)) for i, occ, cid, email in won]
            claims.sort(key=lambda c: c.customer_id)
            return claims

    def _rows(
        self, con: Any, columns: Sequence[str], rest: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        """The rows of ``SELECT columns rest``; from SQLite as one row holding a JSON array:
        the driver lets go of the GIL for every row it steps (see ``WRITE_VARIABLES``)."""
        named = ", ".join(f"{column} AS c{i}" for i, column in enumerate(columns))
        if self.engine.dialect.name == "sqlite":
            names = ", ".join(f"c{i}" for i in range(len(columns)))
            sql = f"SELECT json_group_array(json_array({names})) FROM (SELECT {named} {rest})"
            (packed,) = con.exec_driver_sql(sql, params).one()
            return [tuple(row) for row in orjson.loads(packed)]
        return [tuple(row) for row in con.exec_driver_sql(f"SELECT {named} {rest}", params)]

    @property
    def _mark(self) -> str:
        return "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def _since(self, value: dt.datetime) -> Any:
        """A time to compare stored times with, bound as SQLAlchemy binds it."""
        return value if self._compared_time is None else self._compared_time(value)

    def _time(self, value: dt.datetime) -> Any:
        """A timestamp as the driver stores it, made once for all the rows of a statement
        (SQLite: the text its adapter would write for each, ``isoformat(" ")``)."""
        if self._time_processor is not None:
            return self._time_processor(value)
        sqlite_text = self.engine.dialect.name == "sqlite" and isinstance(value, dt.datetime)
        return value.isoformat(" ") if sqlite_text else value

    def record(self, outcomes: Sequence[Outcome], lease: tuple[str, float] | None = None) -> None:
        """Store the outcome of messages this run handed over (a final outcome never changes);
        with ``lease`` (run id, seconds), renew that run's lease in the same transaction."""
        if not outcomes:
            if lease is not None:
                self.renew_lease(*lease)
            return
        now = self._time(utcnow())
        mark = self._mark
        # one UPDATE ... FROM (VALUES ...) per chunk (see WRITE_VARIABLES); a VALUES list
        # names its columns column1, column2, ... in SQLite and PostgreSQL alike
        first: dict[int, Outcome] = {}
        for o in outcomes:  # a message's first outcome stands, as row by row
            first.setdefault(o.message_id, o)
        params = [
            (o.message_id, o.status, o.reason, o.provider_id, o.subject, o.locale)
            for o in first.values()
        ]
        with self.engine.begin() as con:
            for values, flat in _values(params, mark, reserved=1):
                sql = (
                    "UPDATE messages SET status = v.column2, reason = v.column3, "
                    "provider_id = v.column4, subject = v.column5, locale = v.column6, "
                    f"finished_at = {mark} FROM (VALUES {values}) AS v "
                    "WHERE messages.id = v.column1 AND messages.status IN ('claimed', 'sending')"
                )
                con.exec_driver_sql(sql, (now, *flat))
            if lease is not None:
                self._renew(con, *lease)

    def record_skips(
        self, run_id: str, campaign: str, items: Sequence[tuple[str, str, str]]
    ) -> None:
        """(occurrence, customer_id, reason) for every member this run did not send to."""
        now = utcnow()
        with self.engine.begin() as con:
            for chunk in _chunks(list(items), 5000):
                con.execute(
                    skips.insert(),
                    [
                        {
                            "run_id": run_id,
                            "campaign": campaign,
                            "occurrence": occ,
                            "customer_id": cid,
                            "reason": reason,
                            "at": now,
                        }
                        for occ, cid, reason in chunk
                    ],
                )

    def mark_sending(self, ids: Sequence[int], codes: Sequence[dict[str, Any]] = ()) -> None:
        """These claimed messages are about to be handed to the sender; ``codes``, the promo
        codes they carry (rows as for :meth:`add_promo_codes`), are stored with the mark:
        one commit, and no code leaves before it is in the ledger."""
        self._set_status(ids, "claimed", "sending", codes)

    def revert_sending(self, ids: Sequence[int]) -> None:
        """Messages marked ``sending`` that the sender never touched go back to ``claimed``."""
        self._set_status(ids, "sending", "claimed")

    def release(self, ids: Sequence[int]) -> int:
        """Give back messages that were never handed over (the run stopped before them)."""
        if not ids:
            return 0
        test, packed = self._among("id", ids)
        with self.engine.begin() as con:
            result = con.exec_driver_sql(
                f"DELETE FROM messages WHERE status = 'claimed' AND {test}", (packed,)
            )
            return int(result.rowcount)

    def reconcile(self, campaign: str) -> tuple[int, int]:
        """Clean up after dead runs of ``campaign`` (lease expired, still 'running').

        Returns (released, unknown): ``claimed`` rows are deleted so they are planned again;
        ``sending`` rows become ``unknown``. The dead runs are marked failed.
        """
        now = utcnow()
        with self.engine.begin() as con:
            dead = [
                str(r[0])
                for r in con.execute(
                    select(runs.c.run_id).where(
                        runs.c.campaign == campaign,
                        runs.c.status == "running",
                        runs.c.lease_until < now,
                    )
                )
            ]
            if not dead:
                return 0, 0
            released = con.execute(
                delete(messages).where(messages.c.run_id.in_(dead), messages.c.status == "claimed")
            ).rowcount
            unknown = con.execute(
                update(messages)
                .where(messages.c.run_id.in_(dead), messages.c.status == "sending")
                .values(
                    status="unknown",
                    reason="the run stopped while this message was being sent; it may have left",
                    finished_at=now,
                )
            ).rowcount
            con.execute(
                update(runs).where(runs.c.run_id.in_(dead)).values(status="failed", finished_at=now)
            )
            return int(released), int(unknown)

    # -- promo codes --------------------------------------------------------------------
    def add_promo_codes(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store issued codes (code, campaign, occurrence, customer_id, discount_percent,
        min_order, currency, expires_at), in one statement per chunk of rows."""
        if rows:
            with self.engine.begin() as con:
                self._insert_codes(con, rows)

    def _insert_codes(self, con: Any, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        unknown = {k for row in rows for k in row} - set(_PROMO_COLUMNS)
        if unknown:
            raise ValueError(f"unknown promo code fields: {sorted(unknown)}")
        now = self._time(utcnow())
        # a batch's codes share their expiry: each distinct one converted once
        expiry = {e: self._time(e) for e in {r["expires_at"] for r in rows}}
        columns = [
            repeat(now, len(rows))
            if c == "created_at"
            else [expiry[r[c]] for r in rows]
            if c == "expires_at"
            else [r.get(c) for r in rows]
            for c in _PROMO_COLUMNS
        ]  # column by column, as a claim
        params = list(zip(*columns, strict=True))
        for values, flat in _values(params, self._mark):
            con.exec_driver_sql(
                f"INSERT INTO promo_codes ({', '.join(_PROMO_COLUMNS)}) VALUES {values}", flat
            )

    def promo_codes_for(
        self, campaign: str, occurrence: str, customer_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Customer → the code already issued to them for (campaign, occurrence): every
        column, typed as SQLAlchemy reads it."""
        names, typed = self._promo_columns
        mark = self._mark
        with self.engine.connect() as con:
            rows = self._keyed(
                con,
                names,
                f"FROM promo_codes WHERE campaign = {mark} AND occurrence = {mark} AND",
                "customer_id",
                list(customer_ids),
                (campaign, occurrence),
            )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = [
                v if f is None or v is None else f(v) for f, v in zip(typed, row, strict=True)
            ]
            found = dict(zip(names, values, strict=True))
            out[str(found["customer_id"])] = found
        return out

    def all_promo_codes(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Every issued code (oldest first), for the shop's checkout to honour."""
        stmt = select(promo_codes).order_by(promo_codes.c.created_at, promo_codes.c.code)
        if campaign is not None:
            stmt = stmt.where(promo_codes.c.campaign == campaign)
        with self.engine.connect() as con:
            return [dict(r) for r in con.execute(stmt).mappings()]

    # -- events -------------------------------------------------------------------------
    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Store events not seen before (by ``event_id``); returns the ids that were new."""
        new: list[str] = []
        now = utcnow()
        with self.engine.begin() as con:
            for row in rows:
                stmt = (
                    self._insert(events)
                    .values(**row, received_at=now)
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(events.c.event_id)
                )
                if con.execute(stmt).first() is not None:
                    new.append(str(row["event_id"]))
        return new

    def event_counts(self) -> dict[str, int]:
        stmt = select(events.c.event, func.count()).group_by(events.c.event)
        with self.engine.connect() as con:
            return {str(r[0]): int(r[1]) for r in con.execute(stmt)}

    def message_email(self, customer_id: str, campaign: str | None = None) -> str | None:
        """The address the latest message to ``customer_id`` went to."""
        stmt = (
            select(messages.c.email)
            .where(messages.c.customer_id == customer_id, messages.c.status != "holdout")
            .order_by(messages.c.planned_at.desc(), messages.c.id.desc())
            .limit(1)
        )
        if campaign is not None:
            stmt = stmt.where(messages.c.campaign == campaign)
        with self.engine.connect() as con:
            row = con.execute(stmt).first()
        return None if row is None else str(row[0])

    def message_by_id(self, message_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as con:
            row = (
                con.execute(select(messages).where(messages.c.id == message_id)).mappings().first()
            )
        return None if row is None else dict(row)

    # -- reading ------------------------------------------------------------------------
    def statuses_of(self, ids: Sequence[int]) -> dict[int, str]:
        """Message id → status (a retried batch checks what an earlier attempt handed over)."""
        with self.engine.connect() as con:
            rows = self._keyed(con, ("id", "status"), "FROM messages WHERE", "id", list(ids))
        return {int(i): str(status) for i, status in rows}

    def status_counts(self, campaign: str | None = None) -> dict[str, int]:
        stmt = select(messages.c.status, func.count()).group_by(messages.c.status)
        if campaign is not None:
            stmt = stmt.where(messages.c.campaign == campaign)
        with self.engine.connect() as con:
            return {str(r[0]): int(r[1]) for r in con.execute(stmt)}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer and a commit costs one fsync, not three;
    ``synchronous=FULL`` keeps every commit durable (nothing is traded for speed)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def open_ledger(url: str) -> Ledger:
    return Ledger(url)
