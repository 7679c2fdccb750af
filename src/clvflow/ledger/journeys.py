"""Journey state: an entry per (journey, entry occurrence, customer), its progress through
the steps, and its exit. A step's message is a ``messages`` row keyed by (journey,
"<entry occurrence>/<step>", customer): the unique key that keeps a campaign occurrence from
going twice keeps a step from going twice per entry, whichever run or worker decides it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    String,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.types import TypeEngine

from clvflow.ledger.bulk import among, rows_table
from clvflow.ledger.claims import UNIQUE_MESSAGE
from clvflow.ledger.database import insert_new, utcnow
from clvflow.ledger.schema import events, journey_entries, messages, promo_codes, runs

JOURNEY_RUN = "journey"  # runs.occurrence of a journey's own run (its steps' runs: "once")
DECIDED = ("sent", "failed", "unknown", "skipped")  # a step with one of these is behind it
ENTRY_COLUMNS = ("id", "occurrence", "customer_id", "entered_at", "step", "step_at")
ENTRANT_FIELDS = ("occurrence", "customer_id", "entered_at", "holdout")
_NEW_ENTRY: dict[str, TypeEngine[Any]] = {
    "occurrence": String(),
    "customer_id": String(),
    "entered_at": DateTime(),
    "holdout": Integer(),
}
_STEP_KEYS: dict[str, TypeEngine[Any]] = {
    "entry_id": Integer(),
    "occurrence": String(),
    "customer_id": String(),
}
_SKIPS: dict[str, TypeEngine[Any]] = {
    "occurrence": String(),
    "customer_id": String(),
    "reason": String(),
}


def step_occurrence(entry_occurrence: str, step: str) -> str:
    return f"{entry_occurrence}/{step}"


def enter(con: Connection, journey: str, run_id: str, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert the entries of ``columns`` (occurrence, customer_id, entered_at UTC, holdout)
    not there yet; a holdout entry is over as it enters. Returns how many were new."""
    if not len(columns["customer_id"]):
        return 0
    given = rows_table(con, "new_entries", _NEW_ENTRY, columns)
    held = given.c.holdout == 1
    rows = select(
        literal(journey, String()),
        literal(run_id, String()),
        *given.c,
        literal(0, Integer()),
        given.c.entered_at,
        case((held, given.c.entered_at), else_=None),
        case((held, literal("holdout", String())), else_=None),
    ).where(true())
    result = con.execute(
        insert_new(con, journey_entries, ("journey", "occurrence", "customer_id")).from_select(
            [
                "journey",
                "run_id",
                *_NEW_ENTRY,
                "step",
                "step_at",
                "exited_at",
                "exit_reason",
            ],
            rows.order_by(given.c.occurrence, given.c.customer_id),
        )
    )
    return max(result.rowcount, 0)


def active(
    con: Connection,
    journey: str,
    due_before: Mapping[int, dt.datetime] | None = None,
    anchored: Sequence[int] = (),
    customers: Sequence[str] = (),
) -> pd.DataFrame:
    """Entries not exited (``ENTRY_COLUMNS``, times naive UTC). With ``due_before`` (step →
    latest ``step_at``, UTC), only those that may change now: at step k with ``step_at`` at
    or before ``due_before[k]``, at a step of ``anchored`` (due by a date), or of one of
    ``customers``."""
    stmt = select(
        journey_entries.c.id,
        journey_entries.c.occurrence,
        journey_entries.c.customer_id,
        # as text: pandas parses the whole column at once
        type_coerce(journey_entries.c.entered_at, String),
        journey_entries.c.step,
        type_coerce(journey_entries.c.step_at, String),
    ).where(journey_entries.c.journey == journey, journey_entries.c.exited_at.is_(None))
    if due_before is not None:
        tests: list[ColumnElement[bool]] = [
            (journey_entries.c.step == step) & (journey_entries.c.step_at <= moment)
            for step, moment in due_before.items()
        ]
        if anchored:
            tests.append(journey_entries.c.step.in_(list(anchored)))
        if customers:
            tests.append(among(con, journey_entries.c.customer_id, customers))
        stmt = stmt.where(or_(false(), *tests))
    rows = [tuple(row) for row in con.execute(stmt)]  # tuples: pandas' fast path
    frame = pd.DataFrame.from_records(rows, columns=list(ENTRY_COLUMNS))
    for column in ("entered_at", "step_at"):
        frame[column] = pd.to_datetime(frame[column], format="ISO8601").astype("datetime64[us]")
    return frame.astype({"id": "int64", "step": "int64"})


def active_counts(con: Connection, journey: str) -> dict[int, int]:
    """Step → entries not exited at that step."""
    stmt = (
        select(journey_entries.c.step, func.count())
        .where(journey_entries.c.journey == journey, journey_entries.c.exited_at.is_(None))
        .group_by(journey_entries.c.step)
    )
    return {int(step): int(n) for step, n in con.execute(stmt)}


def last_advanced(con: Connection, journey: str) -> dt.datetime | None:
    """The ``as_of`` (shop time) of the journey's latest finished run, not a dry one."""
    stmt = select(func.max(runs.c.as_of)).where(
        runs.c.campaign == journey,
        runs.c.occurrence == JOURNEY_RUN,
        runs.c.status == "finished",
        runs.c.dry_run == 0,
    )
    found = con.scalar(stmt)
    return found if isinstance(found, dt.datetime) else None


def entered_since(con: Connection, journey: str, since: dt.datetime) -> set[str]:
    """Customers with an entry still going, or one entered since ``since`` (UTC)."""
    stmt = select(journey_entries.c.customer_id).where(
        journey_entries.c.journey == journey,
        (journey_entries.c.exited_at.is_(None)) | (journey_entries.c.entered_at >= since),
    )
    return {str(c) for c in con.scalars(stmt)}


def exit_entries(con: Connection, ids: Sequence[int], reason: str, at: dt.datetime) -> int:
    """End the entries ``ids`` still going, at ``at`` (UTC), with ``reason``."""
    if not ids:
        return 0
    stmt = (
        update(journey_entries)
        .where(journey_entries.c.exited_at.is_(None), among(con, journey_entries.c.id, ids))
        .values(exited_at=at, exit_reason=reason)
    )
    return con.execute(stmt).rowcount


def record_skipped(
    con: Connection,
    journey: str,
    run_id: str,
    items: Sequence[tuple[str, str, str]],
    at: dt.datetime | None = None,
) -> None:
    """A ``skipped`` message row per (step occurrence, customer, reason) not there yet,
    decided ``at`` (naive UTC; default now)."""
    if not items:
        return
    given = rows_table(
        con, "skipped_steps", _SKIPS, {k: [row[i] for row in items] for i, k in enumerate(_SKIPS)}
    )
    now = at or utcnow()
    rows = select(
        literal(journey, String()),
        given.c.occurrence,
        given.c.customer_id,
        literal("", String()),
        literal("marketing", String()),
        literal("skipped", String()),
        given.c.reason,
        literal(run_id, String()),
        literal(now, DateTime()),
        literal(now, DateTime()),
    ).where(true())
    con.execute(
        insert_new(con, messages, UNIQUE_MESSAGE).from_select(
            [
                "campaign",
                "occurrence",
                "customer_id",
                "email",
                "kind",
                "status",
                "reason",
                "run_id",
                "planned_at",
                "finished_at",
            ],
            rows.order_by(given.c.occurrence, given.c.customer_id),
        )
    )


def advance(
    con: Connection,
    journey: str,
    step: int,
    step_name: str,
    last: bool,
    entries: Sequence[tuple[int, str, str]],
    at: dt.datetime,
) -> int:
    """Move the ``entries`` (id, entry occurrence, customer) at ``step`` whose step message
    is decided (``DECIDED``) to the next step, as of ``at`` (the run's instant, UTC): the
    next step's wait counts from there. After the ``last`` step the entry is completed.
    Returns how many moved."""
    if not entries:
        return 0
    given = rows_table(
        con,
        "step_keys",
        _STEP_KEYS,
        {
            "entry_id": [e[0] for e in entries],
            "occurrence": [step_occurrence(e[1], step_name) for e in entries],
            "customer_id": [e[2] for e in entries],
        },
    )
    done = (
        select(given.c.entry_id)
        .select_from(
            given.join(
                messages,
                and_(
                    messages.c.campaign == journey,
                    messages.c.occurrence == given.c.occurrence,
                    messages.c.customer_id == given.c.customer_id,
                ),
            )
        )
        .where(messages.c.status.in_(DECIDED))
        .subquery("done")
    )
    values: dict[str, Any] = {"step": step + 1, "step_at": at}
    if last:
        values.update(exited_at=at, exit_reason="completed")
    stmt = (
        update(journey_entries)
        .where(
            journey_entries.c.id == done.c.entry_id,
            journey_entries.c.step == step,
            journey_entries.c.exited_at.is_(None),
        )
        .values(**values)
    )
    return con.execute(stmt).rowcount


def redeemed(con: Connection, journey: str) -> pd.DataFrame:
    """(entry occurrence, customer_id) of the entries whose journey code was used."""
    stmt = select(promo_codes.c.occurrence, promo_codes.c.customer_id).where(
        promo_codes.c.campaign == journey, promo_codes.c.redeemed_at.is_not(None)
    )
    rows = [(occ.rsplit("/", 1)[0], cid) for occ, cid in con.execute(stmt)]
    return pd.DataFrame(rows, columns=["occurrence", "customer_id"], dtype="string")


def engaged(con: Connection, journey: str, kinds: Sequence[str]) -> pd.DataFrame:
    """(step occurrence, customer_id, event) for the journey's messages with ``kinds``
    events (open, click)."""
    if not kinds:
        return pd.DataFrame(columns=["occurrence", "customer_id", "event"], dtype="string")
    stmt = (
        select(messages.c.occurrence, messages.c.customer_id, events.c.event)
        .select_from(events.join(messages, events.c.message_id == messages.c.id))
        .where(messages.c.campaign == journey, events.c.event.in_(list(kinds)))
        .distinct()
    )
    rows = [tuple(r) for r in con.execute(stmt)]
    return pd.DataFrame(rows, columns=["occurrence", "customer_id", "event"], dtype="string")


def entry_counts(con: Connection, journey: str) -> list[tuple[int, str | None, int, int]]:
    """(step, exit reason, holdout, entries) for every entry of ``journey``."""
    stmt = select(
        journey_entries.c.step,
        journey_entries.c.exit_reason,
        journey_entries.c.holdout,
        func.count(),
    ).where(journey_entries.c.journey == journey)
    stmt = stmt.group_by(
        journey_entries.c.step, journey_entries.c.exit_reason, journey_entries.c.holdout
    )
    return [(int(s), r, int(h), int(n)) for s, r, h, n in con.execute(stmt)]


def step_counts(
    con: Connection, journey: str, steps: Sequence[str]
) -> list[tuple[str, str, str | None, int]]:
    """(step, status, reason, messages) of the journey's step messages."""
    step = case(
        *((messages.c.occurrence.endswith(f"/{name}"), literal(name)) for name in steps),
        else_=literal(""),
    ).label("step")
    stmt = (
        select(step, messages.c.status, messages.c.reason, func.count())
        .where(messages.c.campaign == journey)
        .group_by(step, messages.c.status, messages.c.reason)
    )
    return [(str(s), str(st), r, int(n)) for s, st, r, n in con.execute(stmt)]


def customer_path(con: Connection, journey: str, customer_id: str) -> dict[str, Any]:
    """One customer's entries of ``journey`` and every step message of theirs."""
    entries = con.execute(
        select(journey_entries)
        .where(journey_entries.c.journey == journey, journey_entries.c.customer_id == customer_id)
        .order_by(journey_entries.c.entered_at)
    ).mappings()
    steps = con.execute(
        select(
            messages.c.occurrence,
            messages.c.status,
            messages.c.reason,
            messages.c.template,
            messages.c.variant,
            messages.c.planned_at,
            messages.c.finished_at,
        )
        .where(messages.c.campaign == journey, messages.c.customer_id == customer_id)
        .order_by(messages.c.id)
    ).mappings()
    return {"entries": [dict(e) for e in entries], "steps": [dict(s) for s in steps]}
