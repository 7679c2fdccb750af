"""One run, top to bottom: plan → claim → for each batch: render → send → record.

A batch needs nothing from the run that planned it but its claims: :func:`send_batch` works
as well in another process (the flow's fan-out) with a workspace of its own and the rows
read from the shop's data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

import pandas as pd

from clvflow.delivery.base import Send, SendAbortedError, Sender, SendResult
from clvflow.ledger.store import Claim
from clvflow.personalization.orders import OrderView
from clvflow.pipeline.claim import batches, claim, still_claimed
from clvflow.pipeline.job import Job
from clvflow.pipeline.record import record
from clvflow.pipeline.render import Rendered, Rows, planned_rows, render
from clvflow.pipeline.send import hand_over, mark, ready
from clvflow.pipeline.summary import BatchResult, RunSummary
from clvflow.pipeline.workspace import Workspace
from clvflow.planning.plan import Plan, plan_run

Progress = Callable[[int, int], None]  # (batches done, batches in all)


def reconcile(ws: Workspace, job: Job) -> tuple[int, int]:
    """After a dead run of the same campaign: (claims released to be planned again,
    messages it left ``sending``, now ``unknown``)."""
    return (0, 0) if job.dry_run else ws.ledger.reconcile(job.name)


def plan(ws: Workspace, job: Job, members: pd.DataFrame) -> Plan:
    """Who gets a message: members − suppressed − already sent − capped − holdout − outside
    the send window, each skip with its reason."""
    cfg = ws.project.config
    templates = job.spec.templates
    return plan_run(
        job.name,
        job.spec,
        members,
        ws.ledger,
        job.as_of,
        marketing=ws.kind(templates) == "marketing",
        cap=cfg.limits.frequency_cap,
        timezone=cfg.shop.timezone,
        holdout_percent=cfg.measurement.holdout_for(
            job.spec, transactional=ws.sends_transactional(templates)
        ),
    )


def claim_plan(ws: Workspace, job: Job, plan: Plan) -> list[Claim]:
    """Claim the plan's messages; the data of the claimed customers is read ahead in the
    order the batches will ask for it."""
    cfg = ws.project.config
    lease = cfg.limits.run_lease_seconds
    kind = ws.kind(job.spec.templates)
    claims = claim(ws.ledger, job, plan, kind, lease, cfg.shop.timezone)
    ws.composer.expect([c.customer_id for c in claims])
    return claims


@dataclass
class Prepared:
    """A batch rendered and made ready by the sender, nothing of it handed over yet; and
    what an earlier attempt of the same batch recorded."""

    rendered: Rendered
    send: Send | None
    earlier: BatchResult
    sender: Sender | None = None


def prepare(
    ws: Workspace,
    job: Job,
    batch: Sequence[Claim],
    sender: Sender | None,
    rows: Rows,
    orders: dict[str, OrderView] | None = None,
) -> Prepared:
    """Render a batch and let the sender prepare it. A retry of a batch renders only what
    is still ``claimed``."""
    fresh, earlier = list(batch), BatchResult()
    if not job.dry_run:
        fresh, earlier = still_claimed(ws.ledger, batch, job.clock(ws.project.config.shop.timezone))
    rendered = render(ws.composer, ws.ledger, ws.project.config.shop, job, fresh, rows, orders)
    return Prepared(rendered, ready(sender, rendered, job.dry_run), earlier, sender)


def marked(ws: Workspace, job: Job, prepared: Prepared) -> Prepared:
    """The batch marked ``sending``, without the messages another run took over (made
    ready again for the sender when some were)."""
    rendered = mark(ws.ledger, prepared.rendered, prepared.send, job.run_id)
    if rendered is prepared.rendered:
        return prepared
    send = ready(prepared.sender, rendered, job.dry_run) if rendered.messages else None
    return Prepared(rendered, send, prepared.earlier, prepared.sender)


def settle(ws: Workspace, job: Job, prepared: Prepared, results: Send) -> BatchResult:
    """Record a batch's outcomes once ``results`` gives them (renewing the run's lease). If
    the backend refused the run, what it did is recorded and the error propagates."""
    timezone = ws.project.config.shop.timezone
    try:
        sent = results()
    except SendAbortedError as stop:
        record(ws.ledger, prepared.rendered, stop.results, at=job.clock(timezone))
        raise
    lease = (job.run_id, ws.project.config.limits.run_lease_seconds)
    result = record(ws.ledger, prepared.rendered, sent, lease, job.dry_run, job.clock(timezone))
    result.add(prepared.earlier)
    return result


def send_batch(
    ws: Workspace,
    job: Job,
    batch: Sequence[Claim],
    sender: Sender | None,
    rows: Rows,
    orders: dict[str, OrderView] | None = None,
) -> BatchResult:
    """Render, hand over and record one batch."""
    prepared = marked(ws, job, prepare(ws, job, batch, sender, rows, orders))
    return settle(ws, job, prepared, partial(_hand_over, ws, job, prepared))


def _hand_over(ws: Workspace, job: Job, prepared: Prepared) -> list[SendResult]:
    return hand_over(ws.ledger, prepared.rendered, prepared.send, job.dry_run)


def deliver(
    ws: Workspace,
    job: Job,
    todo: Sequence[Sequence[Claim]],
    prepare_batch: Callable[[int, Sequence[Claim]], Prepared],
) -> Iterator[BatchResult]:
    """Every batch's result, in order; batch k + 1 renders (``prepare_batch(k + 1, batch)``)
    while batch k is on the wire. Batch k + 1 is marked ``sending`` once batch k is
    recorded, just before the sending thread takes it. If anything fails, the batch on the
    wire is still recorded before the error propagates."""
    with ThreadPoolExecutor(1, thread_name_prefix="send") as wire:
        sending: tuple[Prepared, Send] | None = None
        try:
            for index, batch in enumerate(todo, start=1):
                prepared = prepare_batch(index, batch)
                if sending is not None:
                    current, sending = sending, None
                    yield settle(ws, job, *current)
                prepared = marked(ws, job, prepared)
                sending = (prepared, wire.submit(_hand_over, ws, job, prepared).result)
            if sending is not None:
                current, sending = sending, None
                yield settle(ws, job, *current)
        finally:
            if sending is not None:
                with suppress(Exception):  # the error being raised is the one to report
                    settle(ws, job, *sending)


def run(
    ws: Workspace,
    job: Job,
    members: pd.DataFrame,
    sender: Sender | None,
    summary: RunSummary,
    *,
    orders: dict[str, OrderView] | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    """The whole run for ``members`` (one row per customer, every attribute). Every planned
    message ends with one recorded outcome; on any error the claims never handed over are
    released (planned again by the next run) and the run is recorded as failed."""
    summary.released, summary.earlier_unknown = reconcile(ws, job)
    planned = plan(ws, job, members)
    summary.planned_as(planned)
    claims = claim_plan(ws, job, planned)
    summary.claimed(planned, claims)
    rows = planned_rows(planned.send)
    todo = batches(claims, job.spec.batch_size or ws.project.config.limits.batch_size)

    def prepare_batch(index: int, batch: Sequence[Claim]) -> Prepared:
        return prepare(ws, job, batch, sender, rows, orders)

    try:
        for done, result in enumerate(deliver(ws, job, todo, prepare_batch), start=1):
            summary.add(result)
            if progress is not None:
                progress(done, len(todo))
    except BaseException as error:
        fail(ws, job, claims, summary, error)
        raise
    return finish(ws, job, summary)


def fail(
    ws: Workspace, job: Job, claims: Sequence[Claim], summary: RunSummary, error: BaseException
) -> None:
    """After an error: what the backend did before it refused the run is counted, claims
    never handed to the sender are released (planned again by the next run), and the run
    is recorded as failed."""
    if isinstance(error, SendAbortedError):
        summary.count(error.results)
    if not job.dry_run:
        summary.released += ws.ledger.release([c.id for c in claims])
    finish(ws, job, summary, "failed")


def finish(ws: Workspace, job: Job, summary: RunSummary, status: str = "finished") -> RunSummary:
    if not job.dry_run:
        ws.ledger.finish_run(job.run_id, status, summary.as_dict())
    return summary
