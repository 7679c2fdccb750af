"""The campaign flow: the engine's stages as Prefect tasks, with artifacts for the UI.

Tasks take whole batches (``limits.batch_size`` customers), never one customer each.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.params import CampaignSpec
from clvflow.campaigns.runner import CampaignRun, RunSummary
from clvflow.ledger.store import Claim
from clvflow.planning.plan import Plan
from clvflow.project.layout import Project
from clvflow.reporting.summary import summary_markdown, summary_rows


def _run_name() -> str:
    params = flow_run.parameters
    as_of = params.get("as_of")
    when = as_of.isoformat(timespec="minutes") if isinstance(as_of, dt.datetime) else "now"
    suffix = " (dry run)" if params.get("dry_run") else ""
    return f"{params.get('campaign', 'campaign')} @ {when}{suffix}"


@task(name="evaluate and plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def plan_task(run: CampaignRun) -> Plan:
    run.evaluate()
    return run.plan()


@task(name="claim", cache_policy=NO_CACHE)
def claim_task(run: CampaignRun, plan: Plan) -> list[Claim]:
    return run.claim(plan)


@task(name="render and send batch", cache_policy=NO_CACHE, task_run_name="batch {index}/{total}")
def send_task(run: CampaignRun, batch: list[Claim], index: int, total: int) -> tuple[int, int]:
    return run.send_batch(batch)


@flow(name="campaign", flow_run_name=_run_name, log_prints=False)
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
    with CampaignRun(loaded, target, as_of=as_of, dry_run=dry_run) as run:
        plan = plan_task(run)
        claims = claim_task(run, plan)
        batches = run.batches(claims)
        progress = create_progress_artifact(progress=0.0, description=f"{campaign}: sending")
        assert isinstance(progress, UUID)  # synchronous flow: not a coroutine
        try:
            for index, batch in enumerate(batches, start=1):
                send_task(run, batch, index, len(batches))
                update_progress_artifact(progress, progress=100.0 * index / len(batches))
        except BaseException:
            run.release_unsent(claims)
            run.finish("failed")
            raise
        if not batches:
            update_progress_artifact(progress, progress=100.0)
        summary = run.finish()
    publish(summary)
    logger.info(
        "%s: %d members, %d sent, %d failed, skipped %s",
        campaign,
        summary.members,
        summary.sent,
        summary.failed,
        dict(summary.skipped),
    )
    return summary.as_dict()


def publish(summary: RunSummary) -> None:
    key = "".join(ch if ch.isalnum() else "-" for ch in summary.campaign.lower())
    create_table_artifact(
        key=f"{key}-counts",
        table=summary_rows(summary),
        description=f"{summary.campaign}: what happened to each member",
    )
    create_markdown_artifact(key=f"{key}-summary", markdown=summary_markdown(summary))
