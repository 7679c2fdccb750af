"""The journey flow: one flow run advances every step of a journey (enter, decide, send
each step through the pipeline), with a table per step and the funnel as artifacts.

Scheduled (hourly, say), every run catches up on whatever became due; a deployment may
also be triggered by ``shop.order.placed`` with the event's payload as ``order``, so that
an order's first step goes at once, even before the shop's data has the order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from clvflow.campaigns.triggered import OrderPlaced
from clvflow.delivery.base import Sender
from clvflow.journeys.catalog import Journey, load_journeys
from clvflow.journeys.run import advance_journey
from clvflow.journeys.status import journey_status
from clvflow.journeys.summary import JourneySummary
from clvflow.journeys.views import funnel_markdown, step_rows
from clvflow.orchestration.artifacts import artifact_key
from clvflow.orchestration.flows import as_of_label
from clvflow.orchestration.secrets import flow_sender
from clvflow.pipeline.workspace import Workspace, open_workspace
from clvflow.project.clock import local_now
from clvflow.project.journey_spec import JourneySpec
from clvflow.project.layout import Project


def run_name() -> str:
    """'<journey> · <as of>', and the order for a triggered run."""
    params = flow_run.parameters
    when, _ = as_of_label(params)
    order = params.get("order")
    if isinstance(order, OrderPlaced):
        when += f" · order {order.order.order_id}"
    elif isinstance(order, dict) and isinstance(order.get("order"), dict):
        when += f" · order {order['order'].get('order_id')}"
    suffix = " (dry run)" if params.get("dry_run") else ""
    return f"{params.get('campaign', 'journey')} · {when}{suffix}"


@task(name="advance every step", cache_policy=NO_CACHE)
def advance_task(
    ws: Workspace,
    journey: Journey,
    as_of: dt.datetime,
    sender: Sender | None,
    dry_run: bool,
    order: OrderPlaced | None,
) -> JourneySummary:
    return advance_journey(ws, journey, as_of, sender, dry_run=dry_run, order=order)


def _journey(project: Project, name: str, spec: JourneySpec) -> Journey:
    """The journey as prefect.yaml has it (its lines name errors), with this run's spec."""
    known = (
        load_journeys(project.prefect_file).get(name) if project.prefect_file.is_file() else None
    )
    source = known.source if known is not None else None
    return Journey(name=name, spec=spec, entrypoint="", schedules=(), line=None, source=source)


@flow(name="journey", flow_run_name=run_name, log_prints=False)
def journey_flow(
    campaign: str,
    spec: JourneySpec,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    project: str = ".",
    order: OrderPlaced | None = None,
) -> dict[str, Any]:
    """Enter who enters, advance every entry that is due, publish a table per step."""
    loaded = Project.load(project)
    journey = _journey(loaded, campaign, spec)
    when = (as_of or local_now(loaded.config.shop.timezone)).replace(tzinfo=None)
    sender = None if dry_run else flow_sender(loaded)  # no key: stops before anything else
    try:
        with open_workspace(loaded, when) as ws:
            summary = advance_task(ws, journey, when, sender, dry_run, order)
            locale = loaded.config.shop.default_locale
            status = journey_status(ws.ledger, journey, ws.data, locale)
    finally:
        if sender is not None:
            sender.close()
    key = artifact_key(campaign)
    create_table_artifact(
        key=f"{key}-steps",
        table=step_rows(summary, status),
        description=f"{campaign}: this run and the journey so far, per step",
    )
    create_markdown_artifact(
        key=f"{key}-funnel",
        markdown=funnel_markdown(summary, status),
        description=f"{campaign}: funnel",
    )
    get_run_logger().info(
        "%s: %d entered (%d held out), %d sent, %d failed",
        campaign,
        summary.entered,
        summary.held_out,
        summary.sent,
        summary.failed,
    )
    return summary.as_dict()
