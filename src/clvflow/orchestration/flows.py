"""The campaign flow: the pipeline's stages as Prefect tasks, with artifacts and events.

Tasks take whole batches (``limits.batch_size`` customers), never one customer each; with
``spec.workers`` > 1 the batches fan out over a pool of processes sharing the ledger.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.run import campaign_job, new_summary, segment_members
from clvflow.delivery.base import Sender
from clvflow.ledger.store import Claim
from clvflow.orchestration import events
from clvflow.orchestration.artifacts import Progress, publish
from clvflow.orchestration.batches import Opaque, send_batches
from clvflow.orchestration.secrets import flow_sender
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.job import Job
from clvflow.pipeline.render import Rows, planned_rows
from clvflow.pipeline.samples import write_samples
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace, open_workspace
from clvflow.planning.plan import Plan
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.layout import Project


def _occurrence(spec: object, as_of: dt.datetime | None) -> str:
    resend = spec.get("resend") if isinstance(spec, dict) else getattr(spec, "resend", None)
    if resend == "once":
        return "once"
    if resend == "per_order":
        return "per order"
    return (as_of or dt.datetime.now()).date().isoformat()


def as_of_label(params: dict[str, object]) -> tuple[str, dt.datetime | None]:
    """A run's ``as_of`` parameter as 'YYYY-MM-DD HH:MM' (or 'now'), and as a time."""
    as_of = params.get("as_of")
    if isinstance(as_of, str):
        as_of = dt.datetime.fromisoformat(as_of)
    if isinstance(as_of, dt.datetime):
        return as_of.strftime("%Y-%m-%d %H:%M"), as_of
    return "now", None


def run_name() -> str:
    """'<campaign> · <occurrence> · <as of>', e.g. 'win-back · 2026-11-23 · 10:00'."""
    params = flow_run.parameters
    when, as_of = as_of_label(params)
    occurrence = _occurrence(params.get("spec"), as_of)
    suffix = " (dry run)" if params.get("dry_run") else ""
    return f"{params.get('campaign', 'campaign')} · {occurrence} · {when}{suffix}"


@task(name="evaluate and plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def plan_task(ws: Workspace, job: Job) -> Opaque[Plan]:
    members = segment_members(ws, job.spec.segment, job.as_of)
    return Opaque(pipeline.plan(ws, job, members))


@task(name="claim", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def claim_task(ws: Workspace, job: Job, plan: Opaque[Plan]) -> Opaque[list[Claim]]:
    return Opaque(pipeline.claim_plan(ws, job, plan.value))


@task(name="render samples", cache_policy=NO_CACHE)
def sample_task(ws: Workspace, job: Job, claims: Opaque[list[Claim]], rows: Rows) -> dict[str, str]:
    return write_samples(ws, job, claims.value, rows)


@flow(name="campaign", flow_run_name=run_name, log_prints=False)
def campaign_flow(
    campaign: str,
    spec: CampaignSpec,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    project: str = ".",
) -> dict[str, Any]:
    """Evaluate the segment, plan, claim, render and send in batches, record, report."""
    loaded = Project.load(project)
    target = Campaign(name=campaign, spec=spec, entrypoint="", schedules=(), line=None)
    job = campaign_job(loaded, target, as_of, dry_run)
    sender = None if dry_run else flow_sender(loaded)  # no key: stops before anything else
    try:
        with open_workspace(loaded, job.as_of) as ws:
            summary = _run(ws, job, sender)
    finally:
        if sender is not None:
            sender.close()
    publish(summary)
    events.campaign_finished(summary)
    get_run_logger().info(
        "%s: %d members, %d sent, %d failed, %d waiting, skipped %s",
        campaign,
        summary.members,
        summary.sent,
        summary.failed,
        summary.waiting,
        dict(summary.skipped),
    )
    return summary.as_dict()


def _run(ws: Workspace, job: Job, sender: Sender | None) -> RunSummary:
    events.campaign_started(job.name, job.occurrence, job.dry_run)
    summary = new_summary(job, job.spec.segment)
    summary.released, summary.earlier_unknown = pipeline.reconcile(ws, job)
    planned = plan_task(ws, job)
    summary.planned_as(planned.value)
    claimed = claim_task(ws, job, planned)
    claims = claimed.value
    summary.claimed(planned.value, claims)
    rows = planned_rows(planned.value.send)
    progress = Progress(job.name)
    try:
        if claims:
            summary.samples = sample_task(ws, job, claimed, rows)
        for result in send_batches(ws, job, claims, sender, rows, progress):
            summary.add(result)
    except BaseException as error:
        pipeline.fail(ws, job, claims, summary, error)
        events.campaign_finished(summary, failed=True)
        raise
    if not claims:
        progress(1, 1)
    return pipeline.finish(ws, job, summary)
