"""The campaign flow: the engine's stages as Prefect tasks, with artifacts and events.

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
from clvflow.campaigns.params import CampaignSpec
from clvflow.campaigns.runner import CampaignRun, RunSummary
from clvflow.delivery.senders import open_sender
from clvflow.ledger.store import Claim
from clvflow.orchestration import events
from clvflow.orchestration.artifacts import Progress, publish
from clvflow.orchestration.batches import Opaque, send_batches
from clvflow.planning.plan import Plan
from clvflow.project.layout import Project


def _occurrence(spec: object, as_of: dt.datetime | None) -> str:
    resend = spec.get("resend") if isinstance(spec, dict) else getattr(spec, "resend", None)
    if resend == "once":
        return "once"
    if resend == "per_order":
        return "per order"
    return (as_of or dt.datetime.now()).date().isoformat()


def run_name() -> str:
    """'<campaign> · <occurrence> · <as of>', e.g. 'win-back · 2026-11-23 · 10:00'."""
    params = flow_run.parameters
    as_of = params.get("as_of")
    if isinstance(as_of, str):
        as_of = dt.datetime.fromisoformat(as_of)
    when = as_of.strftime("%Y-%m-%d %H:%M") if isinstance(as_of, dt.datetime) else "now"
    occurrence = _occurrence(params.get("spec"), as_of if isinstance(as_of, dt.datetime) else None)
    suffix = " (dry run)" if params.get("dry_run") else ""
    return f"{params.get('campaign', 'campaign')} · {occurrence} · {when}{suffix}"


@task(name="evaluate and plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def plan_task(run: CampaignRun) -> Opaque[Plan]:
    run.evaluate()
    return Opaque(run.plan())


@task(name="claim", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def claim_task(run: CampaignRun, plan: Opaque[Plan]) -> Opaque[list[Claim]]:
    return Opaque(run.claim(plan.value))


@task(name="render samples", cache_policy=NO_CACHE)
def sample_task(run: CampaignRun, claims: Opaque[list[Claim]]) -> dict[str, str]:
    return run.write_samples(claims.value)


@flow(name="campaign", flow_run_name=run_name, log_prints=False)
def campaign_flow(
    campaign: str,
    spec: CampaignSpec,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    project: str = ".",
) -> dict[str, Any]:
    """Evaluate the segment, plan, claim, render and send in batches, record, report."""
    logger = get_run_logger()
    loaded = Project.load(project)
    target = Campaign(name=campaign, spec=spec, entrypoint="", schedules=(), line=None)
    sender = None
    if not dry_run and spec.workers <= 1 and loaded.config.delivery.backend == "sendgrid":
        # the sender in its own process: batch k is sent while batch k + 1 renders
        sender = open_sender(loaded, own_process=True)
    try:
        summary = _run(CampaignRun(loaded, target, as_of=as_of, dry_run=dry_run, sender=sender))
    finally:
        if sender is not None:
            sender.close()  # also when the run could not even start
    publish(summary)
    events.campaign_finished(summary)
    logger.info(
        "%s: %d members, %d sent, %d failed, %d waiting, skipped %s",
        campaign,
        summary.members,
        summary.sent,
        summary.failed,
        summary.waiting,
        dict(summary.skipped),
    )
    return summary.as_dict()


def _run(opened: CampaignRun) -> RunSummary:
    with opened as run:
        events.campaign_started(run.campaign.name, run.summary.occurrence, run.dry_run)
        plan = plan_task(run)
        claimed = claim_task(run, plan)
        claims = claimed.value
        progress = Progress(run.campaign.name)
        try:
            if claims:
                sample_task(run, claimed)
            send_batches(run, run.batches(claims), progress)
        except BaseException:
            run.release_unsent(claims)
            summary = run.finish("failed")
            events.campaign_finished(summary, failed=True)
            raise
        if not claims:
            progress(1, 1)
        return run.finish()
