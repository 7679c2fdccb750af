"""One journey run, top to bottom: enter → decide → for each step: record skips and exits,
send the due through the campaign pipeline (plan → claim → render → send → record) →
advance the entries whose step is decided.

A run advances every entry that is due at ``as_of``, so no run sleeps for days and a missed
run catches up. An entry whose step is decided may be due for the next one at once (a
step without a wait, or a date long past): the run decides again until nothing moves.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from dateutil.relativedelta import relativedelta

from clvflow.campaigns.run import workspace_and_sender
from clvflow.campaigns.triggered import OrderPlaced
from clvflow.delivery.base import Sender
from clvflow.journeys.catalog import Journey
from clvflow.journeys.decide import DUE, EXIT, WAITING, decide
from clvflow.journeys.enter import entrants, to_local
from clvflow.journeys.facts import gather, ordered_between
from clvflow.journeys.ordered import order_entrant, triggered_order
from clvflow.journeys.steps import advance_rows, exit_rows, send_step
from clvflow.journeys.summary import JourneySummary, StepCounts
from clvflow.ledger import journeys as state
from clvflow.personalization.orders import OrderView
from clvflow.pipeline.workspace import Workspace
from clvflow.planning.plan import ledger_time
from clvflow.project.clock import local_now
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog

SKIPS = ("missing_date", "expired", "where", "unless")
DEFERRED = ("outside_send_window", "capped", "claimed_by_another_run")  # tried again later


def advance_journey(
    ws: Workspace,
    journey: Journey,
    as_of: dt.datetime,
    sender: Sender | None,
    *,
    dry_run: bool = False,
    order: OrderPlaced | None = None,
) -> JourneySummary:
    """Enter who enters, then advance every entry that is due (see the module's docstring).
    The run is recorded in the ledger with its summary; the next run reads only the entries
    that may have changed since."""
    summary = JourneySummary(journey.name, uuid.uuid4().hex, as_of, dry_run)
    summary.steps = {s.name: StepCounts() for s in journey.spec.steps}
    with ws.ledger.engine.connect() as con:
        since = state.last_advanced(con, journey.name)
    if not dry_run:
        lease = ws.project.config.limits.run_lease_seconds
        ws.ledger.start_run(summary.run_id, journey.name, state.JOURNEY_RUN, as_of, False, lease)
    try:
        _advance_all(ws, journey, summary, sender, order, since)
    except BaseException:
        if not dry_run:
            ws.ledger.finish_run(summary.run_id, "failed", summary.as_dict())
        raise
    if not dry_run:
        ws.ledger.finish_run(summary.run_id, "finished", summary.as_dict())
    return summary


def _advance_all(
    ws: Workspace,
    journey: Journey,
    summary: JourneySummary,
    sender: Sender | None,
    order: OrderPlaced | None,
    since: dt.datetime | None,
) -> None:
    as_of, dry_run = summary.as_of, summary.dry_run
    catalog = SegmentCatalog.load(ws.project.segments_dir)
    held = journey_holdout(ws, journey)
    new = entrants(ws.data, catalog, ws.ledger, journey, as_of, held)
    if order is not None:
        new = pd.concat([new, order_entrant(ws, journey, order, as_of, held)], ignore_index=True)
    _enter(ws, journey, new, summary)
    facts = gather(ws.data, catalog, ws.ledger, journey, as_of)
    orders = triggered_order(ws, order, as_of)
    tried: set[tuple[int, int]] = set()  # (entry, step) handed to the pipeline by this run
    entries = decisions = pd.DataFrame({"id": [], "step": [], "decision": []})
    for _ in range(rounds(journey) if not dry_run else 1):
        entries = read_entries(ws, journey, as_of, since, new if dry_run else None)
        decisions = decide(journey.spec, entries, facts, as_of)
        keys = pd.Series(list(zip(decisions["id"], decisions["step"], strict=True)), dtype=object)
        decisions = decisions[~keys.isin(tried).to_numpy()]
        if not _apply(ws, journey, decisions, sender, summary, orders, tried):
            break
    with ws.ledger.engine.connect() as con:
        going = state.active_counts(con, journey.name)
    for index, step in enumerate(journey.spec.steps):
        counts = summary.steps[step.name]
        if dry_run:  # nothing moved: those not read (not due), and those read but waiting
            read = int(((entries["id"] > 0) & (entries["step"] == index)).sum())
            mine = decisions[decisions["step"] == index]
            counts.waiting = going.get(index, 0) - read + int((mine["decision"] == WAITING).sum())
        else:  # who is still at the step, less those due but put off (window, cap)
            put_off = sum(counts.skipped[r] for r in DEFERRED)
            counts.waiting = max(going.get(index, 0) - put_off, 0)


def journey_holdout(ws: Workspace, journey: Journey) -> float:
    """The share of the journey's entries held out: its spec's, else the shop's default;
    none when a step sends a transactional template."""
    transactional = ws.sends_transactional(journey.spec.templates)
    return ws.project.config.measurement.holdout_for(journey.spec, transactional=transactional)


def rounds(journey: Journey) -> int:
    """How often a run decides: once, unless a step after the first may be due as soon as
    the step before is decided (no wait, or a date that may be long past)."""
    later = journey.spec.steps[1:]
    at_once = any(s.at is not None or s.wait_period == relativedelta() for s in later)
    return len(journey.spec.steps) if at_once else 1


def decide_now(ws: Workspace, journey: Journey, as_of: dt.datetime) -> pd.DataFrame:
    """Who is due for which step at ``as_of``, with reasons; nothing is written."""
    catalog = SegmentCatalog.load(ws.project.segments_dir)
    with ws.ledger.engine.connect() as con:
        since = state.last_advanced(con, journey.name)
    facts = gather(ws.data, catalog, ws.ledger, journey, as_of)
    return decide(journey.spec, read_entries(ws, journey, as_of, since), facts, as_of)


def _enter(ws: Workspace, journey: Journey, new: pd.DataFrame, summary: JourneySummary) -> None:
    held = new["holdout"] == 1
    if summary.dry_run:
        summary.entered, summary.held_out = len(new), int(held.sum())
        return
    with ws.ledger.engine.begin() as con:
        for mask, attr in ((~held, "entered"), (held, "held_out")):
            part = new[mask]
            columns = {c: part[c].tolist() for c in state.ENTRANT_FIELDS}
            setattr(summary, attr, state.enter(con, journey.name, summary.run_id, columns))
    summary.entered += summary.held_out


def read_entries(
    ws: Workspace,
    journey: Journey,
    as_of: dt.datetime,
    since: dt.datetime | None = None,
    dry_new: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The entries still going that may change at ``as_of`` (a dry run adds the ones it
    would enter), times local. After a run at ``since``: those whose wait is over, those
    at a step due by a date, and those of customers who ordered since (they may exit);
    the others wait."""
    tz = ws.data.timezone
    steps = journey.spec.steps
    due_before: dict[int, dt.datetime] | None = None
    customers: list[str] = []
    if since is not None and since < as_of:
        due_before = {
            i: ledger_time(as_of - s.wait_period, tz) for i, s in enumerate(steps) if s.at is None
        }
        if journey.spec.exit.on_order:
            customers = ordered_between(ws.data, since, as_of)
    anchored = [i for i, s in enumerate(steps) if s.at is not None]
    with ws.ledger.engine.connect() as con:
        entries = state.active(con, journey.name, due_before, anchored, customers)
    if dry_new is not None:
        known = set(zip(entries["occurrence"], entries["customer_id"], strict=True))
        pairs = zip(dry_new["occurrence"], dry_new["customer_id"], strict=True)
        unknown = pd.Series([p not in known for p in pairs], index=dry_new.index, dtype=bool)
        fresh = dry_new[unknown & (dry_new["holdout"] == 0)]
        added = pd.DataFrame(
            {
                "id": range(-1, -len(fresh) - 1, -1),
                "occurrence": fresh["occurrence"].tolist(),
                "customer_id": fresh["customer_id"].tolist(),
                "entered_at": fresh["entered_at"].tolist(),
                "step": 0,
                "step_at": fresh["entered_at"].tolist(),
            }
        )
        entries = pd.concat([entries, added.astype(entries.dtypes.to_dict())], ignore_index=True)
    tz = ws.data.timezone
    entries["entered_at"] = to_local(entries["entered_at"], tz)
    entries["step_at"] = to_local(entries["step_at"], tz)
    return entries


def _apply(
    ws: Workspace,
    journey: Journey,
    decisions: pd.DataFrame,
    sender: Sender | None,
    summary: JourneySummary,
    orders: dict[str, tuple[OrderPlaced, OrderView]],
    tried: set[tuple[int, int]],
) -> int:
    """Carry out one round of decisions; how many entries moved or exited."""
    steps = journey.spec.steps
    moved = 0
    for index, step in enumerate(steps):
        mine = decisions[decisions["step"] == index]
        counts = summary.steps[step.name]
        exits = mine[mine["decision"] == EXIT]
        moved += exit_rows(ws, summary, counts, exits, "ordered")
        skipped = mine[mine["decision"].isin(SKIPS)]
        for reason, n in skipped["decision"].value_counts().items():
            counts.skipped[str(reason)] += int(n)
        if not summary.dry_run and not skipped.empty:
            with ws.ledger.engine.begin() as con:
                state.record_skipped(
                    con,
                    journey.name,
                    summary.run_id,
                    [
                        (state.step_occurrence(o, step.name), c, r)
                        for o, c, r in zip(
                            skipped["occurrence"],
                            skipped["customer_id"],
                            skipped["decision"],
                            strict=True,
                        )
                    ],
                    ledger_time(summary.as_of, ws.data.timezone),
                )
            moved += advance_rows(ws, journey, index, skipped, summary.as_of)
        due = mine[mine["decision"] == DUE].sort_values(["customer_id", "occurrence"])
        tried.update(zip(due["id"].astype(int), due["step"].astype(int), strict=True))
        while not due.empty:  # a customer's entries one at a time (two orders: two passes)
            first = ~due["customer_id"].duplicated()
            moved += send_step(ws, journey, index, due[first], sender, summary, orders)
            due = due[~first]
    return moved


@contextmanager
def opened(
    project: Project,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
) -> Iterator[tuple[Workspace, dt.datetime, Sender | None]]:
    """A journey run's workspace, instant and sender: ``sender``, else the configured one
    (none for a dry run)."""
    when = (as_of or local_now(project.config.shop.timezone)).replace(tzinfo=None)
    with workspace_and_sender(project, when, dry_run, sender) as (ws, chosen):
        yield ws, when, chosen


def run_journey(
    project: Project,
    journey: Journey,
    *,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
    order: OrderPlaced | None = None,
) -> JourneySummary:
    """Advance a journey without Prefect."""
    with opened(project, as_of, dry_run, sender) as (ws, when, chosen):
        return advance_journey(ws, journey, when, chosen, dry_run=dry_run, order=order)
