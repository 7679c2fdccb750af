"""Render-and-send tasks, one per batch: in the flow's process, or fanned out over a pool
of processes (``spec.workers``) that share the ledger.

A batch is self-contained: the campaign, its spec, the run id and the ledger rows the run
claimed. A pool process opens the run once (``CampaignRun(worker=True)``) and keeps it for
every batch it gets, so the cost of opening the shop's data is paid once per process.
"""

from __future__ import annotations

import atexit
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.overlap import send_overlapped
from clvflow.campaigns.params import CampaignSpec
from clvflow.campaigns.runner import BatchResult, CampaignRun, PreparedBatch
from clvflow.ledger.store import Claim
from clvflow.project.layout import Project

T = TypeVar("T")


class Opaque(Generic[T]):
    """A task argument or result that Prefect passes through untouched. Prefect walks every
    list, dict and dataclass of a task's inputs and results, looking for futures to track;
    for 100,000 claims that walk costs seconds per campaign. This is none of those."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


@dataclass(frozen=True)
class BatchJob:
    project: str
    campaign: str
    spec: CampaignSpec
    as_of: dt.datetime
    run_id: str
    claims: list[Claim]
    index: int
    total: int


_OPEN: dict[str, CampaignRun] = {}


def _close_all() -> None:
    for run in _OPEN.values():
        run.__exit__(None, None, None)
    _OPEN.clear()


atexit.register(_close_all)


def _worker_run(job: BatchJob) -> CampaignRun:
    run = _OPEN.get(job.run_id)
    if run is None:
        target = Campaign(name=job.campaign, spec=job.spec, entrypoint="", schedules=(), line=None)
        run = CampaignRun(
            Project.load(job.project), target, as_of=job.as_of, run_id=job.run_id, worker=True
        )
        run.__enter__()
        _OPEN[job.run_id] = run
    return run


@task(
    name="render and send batch",
    cache_policy=NO_CACHE,
    task_run_name="batch {index}/{total}",
    retries=2,
    retry_delay_seconds=2,
)
def send_batch_task(job: Opaque[BatchJob], index: int, total: int) -> BatchResult:
    """Render and send one claimed batch in a pool process. A retry is safe: only rows
    still ``claimed`` go to the sender; what an earlier attempt handed over becomes
    ``unknown`` if its outcome was never recorded (see ``CampaignRun.send_batch``)."""
    return _worker_run(job.value).send_batch(job.value.claims)


@task(
    name="render and send batch",
    cache_policy=NO_CACHE,
    task_run_name="batch {index}/{total}",
    retries=2,
    retry_delay_seconds=2,
)
def send_local_task(
    run: CampaignRun, batch: Opaque[list[Claim]], index: int, total: int
) -> BatchResult:
    """One batch in the flow's process; a retry sends only what was never handed over."""
    return run.send_batch(batch.value)


@task(
    name="render batch",
    cache_policy=NO_CACHE,
    task_run_name="batch {index}/{total}",
    retries=2,
    retry_delay_seconds=2,
)
def render_task(
    run: CampaignRun, batch: Opaque[list[Claim]], index: int, total: int
) -> Opaque[PreparedBatch]:
    """Render a batch; nothing is handed over yet, so a retry is safe."""
    return Opaque(run.prepare_batch(batch.value))


def send_overlapped_tasks(
    run: CampaignRun, batches: list[list[Claim]], progress: Callable[[int, int], None]
) -> None:
    """Render batch k + 1 (a task, in this thread) while batch k is sent (plain threads:
    the sender waits for its own process without holding the GIL). Sending is no task of
    its own: that would double the tasks, and the server's work per task is what Prefect
    costs a campaign (bench/prefect_overhead.py); each batch's outcome still reaches the
    counts and the progress bar."""

    def render(batch: Sequence[Claim], index: int, total: int) -> PreparedBatch:
        return render_task(run, Opaque(list(batch)), index, total).value

    send_overlapped(run, batches, progress, render)


def send_batches(
    run: CampaignRun,
    batches: list[list[Claim]],
    progress: Callable[[int, int], None],
) -> None:
    """Every batch, in this process or over ``run.spec.workers`` processes."""
    workers = run.spec.workers
    total = len(batches)
    if workers <= 1 or run.dry_run or total <= 1:
        if not run.dry_run and getattr(run.sender, "waits_off_the_gil", False):
            send_overlapped_tasks(run, batches, progress)
            return
        for index, batch in enumerate(batches, start=1):
            send_local_task(run, Opaque(batch), index, total)
            progress(index, total)
        return
    jobs = [
        BatchJob(
            str(run.project.root), run.campaign.name, run.spec, run.as_of, run.run_id,
            batch, index, total,
        )
        for index, batch in enumerate(batches, start=1)
    ]  # fmt: skip
    with ProcessPoolTaskRunner(max_workers=min(workers, total)) as runner:
        futures = [
            runner.submit(send_batch_task, {"job": Opaque(job), "index": job.index, "total": total})
            for job in jobs
        ]
        done = 0
        pending = set(futures)
        while pending:
            finished = wait(list(pending), timeout=1.0)
            for future in finished.done:
                pending.discard(future)
                run.summary.add(future.result())
                done += 1
                progress(done, total)
