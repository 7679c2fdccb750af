"""Render-and-send tasks, one per batch: in the flow's process, or fanned out over a pool
of processes (``spec.workers``) that share the ledger.

A batch is self-contained: the project folder, the run's job and the ledger rows it
claimed. A pool process opens a workspace and a sender once per run and keeps them for
every batch it gets; it reads the batch's customers from the shop's data.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Generic, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner

from clvflow.delivery.base import Sender
from clvflow.ledger.store import Claim
from clvflow.orchestration.secrets import flow_sender
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.claim import batches
from clvflow.pipeline.job import Job
from clvflow.pipeline.render import Rows, stored_rows
from clvflow.pipeline.summary import BatchResult
from clvflow.pipeline.workspace import Workspace, open_workspace
from clvflow.project.layout import Project

T = TypeVar("T")


class Opaque(Generic[T]):
    """A task argument or result that Prefect passes through untouched: Prefect walks every
    list, dict and dataclass of a task's inputs and results looking for futures, and a
    run's plan and claims are large. This is none of those."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


@dataclass(frozen=True)
class BatchJob:
    project: str
    job: Job
    claims: list[Claim]


_OPEN: dict[str, tuple[Workspace, Sender, Rows]] = {}
_CLOSING = ExitStack()
atexit.register(_CLOSING.close)


def _opened(batch: BatchJob) -> tuple[Workspace, Sender, Rows]:
    """This process's workspace, sender and row reader for the batch's run."""
    found = _OPEN.get(batch.job.run_id)
    if found is None:
        project = Project.load(batch.project)
        ws = _CLOSING.enter_context(open_workspace(project, batch.job.as_of))
        sender = flow_sender(project)
        _CLOSING.callback(sender.close)
        found = _OPEN[batch.job.run_id] = (ws, sender, stored_rows(ws.data, batch.job))
    return found


@task(
    name="render and send batch",
    cache_policy=NO_CACHE,
    task_run_name="batch {index}/{total}",
    retries=2,
    retry_delay_seconds=2,
)
def send_pooled_task(batch: Opaque[BatchJob], index: int, total: int) -> BatchResult:
    """One batch in a pool process. A retry is safe: only rows still ``claimed`` go to the
    sender; what an earlier attempt handed over becomes ``unknown`` if its outcome was
    never recorded."""
    ws, sender, rows = _opened(batch.value)
    return pipeline.send_batch(ws, batch.value.job, batch.value.claims, sender, rows)


@task(
    name="render batch",
    cache_policy=NO_CACHE,
    task_run_name="batch {index}/{total}",
    retries=2,
    retry_delay_seconds=2,
)
def render_task(
    ws: Workspace,
    job: Job,
    batch: Opaque[list[Claim]],
    sender: Sender | None,
    rows: Rows,
    index: int,
    total: int,
) -> Opaque[pipeline.Prepared]:
    """Render a batch in the flow's process; nothing is handed over yet, so a retry is safe.
    (Sending is no task of its own: the batch goes while the next one renders.)"""
    return Opaque(pipeline.prepare(ws, job, batch.value, sender, rows))


def send_batches(
    ws: Workspace,
    job: Job,
    claims: Sequence[Claim],
    sender: Sender | None,
    rows: Rows,
    progress: Callable[[int, int], None],
) -> Iterator[BatchResult]:
    """Every batch's result, in this process or over ``job.spec.workers`` processes."""
    todo = batches(claims, job.spec.batch_size or ws.project.config.limits.batch_size)
    total = len(todo)
    if job.spec.workers <= 1 or job.dry_run or total <= 1:

        def prepare_batch(index: int, batch: Sequence[Claim]) -> pipeline.Prepared:
            return render_task(ws, job, Opaque(list(batch)), sender, rows, index, total).value

        for done, result in enumerate(pipeline.deliver(ws, job, todo, prepare_batch), 1):
            yield result
            progress(done, total)
        return
    root = str(ws.project.root)
    with ProcessPoolTaskRunner(max_workers=min(job.spec.workers, total)) as runner:
        futures = [
            runner.submit(
                send_pooled_task,
                {"batch": Opaque(BatchJob(root, job, batch)), "index": index, "total": total},
            )
            for index, batch in enumerate(todo, start=1)
        ]
        pending = set(futures)
        while pending:
            for future in wait(list(pending), timeout=1.0).done:
                pending.discard(future)
                yield future.result()
                progress(total - len(pending), total)
