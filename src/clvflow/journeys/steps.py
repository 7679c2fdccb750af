"""A journey's step for the entries due for it: those no message can reach exit with the
reason, the others go through the campaign pipeline as the step's job; then every entry
whose step message is decided moves on."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvflow.campaigns.triggered import OrderPlaced, customer_row
from clvflow.delivery.base import Sender
from clvflow.journeys.catalog import Journey
from clvflow.journeys.summary import JourneySummary, StepCounts
from clvflow.ledger import journeys as state
from clvflow.personalization.orders import OrderView
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.job import Job
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace
from clvflow.planning.plan import ledger_time, unreachable
from clvflow.segments.members import customers_frame


def step_job(journey: Journey, index: int, as_of: dt.datetime, dry_run: bool) -> Job:
    """Step ``index`` as a pipeline job: its own run id, the step's name in every message,
    and the code the entry holds when the step has no promo of its own."""
    spec = journey.spec
    step = spec.steps[index]
    holder = None
    if step.promo is None:
        holder = next((s.name for s in reversed(spec.steps[:index]) if s.promo), None)
    return Job(
        journey.name,
        spec.step_campaign(index),
        as_of,
        dry_run=dry_run,
        step=step.name,
        promo_step=holder,
    )


def exit_rows(
    ws: Workspace, summary: JourneySummary, counts: StepCounts, rows: pd.DataFrame, reason: str
) -> int:
    """End the entries of ``rows`` with ``reason`` as of the run (counted; a dry run writes
    nothing); how many ended."""
    if rows.empty:
        return 0
    counts.exited[reason] += len(rows)
    if summary.dry_run:
        return 0
    at = ledger_time(summary.as_of, ws.data.timezone)
    with ws.ledger.engine.begin() as con:
        return state.exit_entries(con, rows["id"].astype(int).tolist(), reason, at)


def advance_rows(
    ws: Workspace, journey: Journey, index: int, rows: pd.DataFrame, as_of: dt.datetime
) -> int:
    """Move the entries of ``rows`` whose step ``index`` message is decided to the next
    step as of ``as_of``; how many moved."""
    keys = list(zip(rows["id"].astype(int), rows["occurrence"], rows["customer_id"], strict=True))
    last = index == len(journey.spec.steps) - 1
    name = journey.spec.steps[index].name
    at = ledger_time(as_of, ws.data.timezone)
    with ws.ledger.engine.begin() as con:
        return state.advance(con, journey.name, index, name, last, keys, at)


def send_step(
    ws: Workspace,
    journey: Journey,
    index: int,
    due: pd.DataFrame,
    sender: Sender | None,
    summary: JourneySummary,
    orders: dict[str, tuple[OrderPlaced, OrderView]],
) -> int:
    """Send step ``index`` to the ``due`` entries; entries that can get nothing (gone
    from the shop's data, no address, no consent, suppressed) exit with that reason."""
    step = journey.spec.steps[index]
    counts = summary.steps[step.name]
    counts.due += len(due)
    job = step_job(journey, index, summary.as_of, summary.dry_run)
    customers = customers_frame(ws.data, due["customer_id"].tolist(), summary.as_of)
    customers["customer_id"] = customers["customer_id"].astype(str)
    triggered = {o: pair for o, pair in orders.items() if o in set(due["occurrence"])}
    for placed, _view in triggered.values():  # the event fills what the data lacks
        row = customer_row(ws.data, placed, summary.as_of)
        if row is not None:
            rest = customers[customers["customer_id"] != placed.customer.customer_id]
            customers = pd.concat([rest, pd.DataFrame([row])], ignore_index=True)
    members = due[["id", "occurrence", "customer_id"]].merge(customers, on="customer_id")
    moved = exit_rows(
        ws,
        summary,
        counts,
        due[~due["customer_id"].isin(members["customer_id"])],
        "unknown_customer",
    )
    members["email"] = members["email"].astype("string").fillna("").str.strip()
    marketing = ws.kind(job.spec.templates) == "marketing"
    reasons = unreachable(members, ws.ledger, marketing=marketing)
    for reason in reasons.dropna().unique():
        moved += exit_rows(ws, summary, counts, members[reasons == reason], str(reason))
    members = members[reasons.isna()].reset_index(drop=True)
    if members.empty:
        return moved
    entry_rows = members[["id", "occurrence", "customer_id"]].copy()
    members["occurrence"] = members["occurrence"].map(
        lambda occ: state.step_occurrence(str(occ), step.name)
    )
    run = RunSummary(
        campaign=journey.name,
        run_id=job.run_id,
        as_of=summary.as_of,
        dry_run=summary.dry_run,
        segment=journey.spec.entry.segment or str(journey.spec.entry.event),
        occurrence=step.name,
    )
    views = {p.customer.customer_id: v for p, v in triggered.values()} if index == 0 else {}
    pipeline.run(ws, job, members.drop(columns=["id"]), sender, run, orders=views or None)
    counts.add_run(run)
    summary.runs.append(run)
    if summary.dry_run:
        return moved
    return moved + advance_rows(ws, journey, index, entry_rows, summary.as_of)
