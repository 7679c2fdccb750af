"""The triggered flow: the thank-you (and upsell) email for one placed order.

Started by the deployment's event trigger on ``shop.order.placed`` with the event's payload
as ``order``; at most once per order, because the ledger keys the message by order id
(the same event twice gives two flow runs, the second sends nothing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.run import campaign_job, new_summary
from clvflow.campaigns.triggered import OrderPlaced, customer_row, run_for_order
from clvflow.delivery.base import Sender
from clvflow.orchestration import events
from clvflow.orchestration.artifacts import publish
from clvflow.orchestration.secrets import flow_sender
from clvflow.pipeline.job import Job
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace, open_workspace
from clvflow.planning.window import next_opening
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.layout import Project


def _run_again_at(
    when: dt.datetime,
    campaign: str,
    spec: CampaignSpec,
    order: OrderPlaced,
    dry_run: bool,
    project: str,
) -> None:
    """Outside the send window: the same deployment runs again when the window opens (the
    ledger still guards against a second email)."""
    logger = get_run_logger()
    deployment = runtime_deployment.id
    if deployment is None:
        logger.info(
            "order %s waits for the send window (opens %s); no deployment to run again",
            order.order.order_id,
            when.isoformat(),
        )
        return
    later = run_deployment(
        name=UUID(deployment),
        parameters={
            "campaign": campaign,
            "spec": spec.model_dump(mode="json"),
            "order": order.model_dump(mode="json"),
            "dry_run": dry_run,
            "project": project,
        },
        scheduled_time=when,
        timeout=0,
        as_subflow=False,
    )
    assert not isinstance(later, Coroutine)  # a synchronous call
    logger.info(
        "order %s waits for the send window: flow run %s at %s",
        order.order.order_id,
        later.id,
        when.isoformat(),
    )


def run_name() -> str:
    params = flow_run.parameters
    order = params.get("order")
    if isinstance(order, OrderPlaced):
        order_id = order.order.order_id
    elif isinstance(order, dict):
        order_id = str((order.get("order") or {}).get("order_id", "?"))
    else:
        order_id = "?"
    return f"{params.get('campaign', 'campaign')} · order {order_id}"


@task(name="plan and send for the order", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def order_task(ws: Workspace, job: Job, order: OrderPlaced, sender: Sender | None) -> RunSummary:
    """A retry is safe: the ledger lets the order's message be claimed once."""
    return run_for_order(ws, job, order, sender, new_summary(job, job.spec.segment))


@flow(name="order placed", flow_run_name=run_name, log_prints=False)
def order_flow(
    campaign: str,
    spec: CampaignSpec,
    order: OrderPlaced,
    dry_run: bool = False,
    project: str = ".",
) -> dict[str, Any]:
    """Send the campaign's email for this order (once per order), or record why not."""
    loaded = Project.load(project)
    target = Campaign(name=campaign, spec=spec, entrypoint="", schedules=(), line=None)
    job = campaign_job(loaded, target, dry_run=dry_run)
    sender = None if dry_run else flow_sender(loaded)
    try:
        with open_workspace(loaded, job.as_of) as ws:
            events.campaign_started(campaign, order.order.order_id, dry_run)
            summary = order_task(ws, job, order, sender)
            if summary.waiting and spec.send_window is not None:
                row = customer_row(ws.data, order, job.as_of)
                zone = row.get("timezone") if row is not None else None
                when = next_opening(spec.send_window, job.as_of, loaded.config.shop.timezone, zone)
                _run_again_at(when, campaign, spec, order, dry_run, project)
    finally:
        if sender is not None:
            sender.close()
    publish(summary)
    events.campaign_finished(summary)
    get_run_logger().info(
        "%s for order %s: %d sent, skipped %s",
        campaign,
        order.order.order_id,
        summary.sent,
        dict(summary.skipped),
    )
    return summary.as_dict()
