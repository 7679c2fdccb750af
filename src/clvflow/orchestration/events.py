"""Prefect events clvflow emits: a campaign run started or finished, and a shop order was
placed (the event that triggers the thank-you campaign)."""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.events.worker import EventsWorker

from clvflow.campaigns.triggered import ORDER_PLACED, OrderPlaced
from clvflow.pipeline.summary import RunSummary

CAMPAIGN_STARTED = "clvflow.campaign.started"
CAMPAIGN_FINISHED = "clvflow.campaign.finished"
CAMPAIGN_FAILED = "clvflow.campaign.failed"


def campaign_resource(campaign: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"clvflow.campaign.{campaign}",
        "prefect.resource.name": campaign,
    }


def campaign_started(campaign: str, occurrence: str, dry_run: bool) -> None:
    emit_event(
        event=CAMPAIGN_STARTED,
        resource=campaign_resource(campaign),
        payload={"occurrence": occurrence, "dry_run": dry_run},
    )


def campaign_finished(summary: RunSummary, failed: bool = False) -> None:
    counts: dict[str, Any] = {
        k: v
        for k, v in summary.as_dict().items()
        if k in ("run_id", "occurrence", "dry_run", "members", "holdout", "waiting",
                 "planned", "sent", "failed", "unknown", "skipped", "by_variant")
    }  # fmt: skip
    emit_event(
        event=CAMPAIGN_FAILED if failed else CAMPAIGN_FINISHED,
        resource=campaign_resource(summary.campaign),
        payload=counts,
    )


def order_placed(placed: OrderPlaced, *, wait: bool = True) -> str:
    """Emit the order-placed event; returns its id. ``wait``: return only once it has left
    the process (a short-lived command); a server process lets it go in the background."""
    event = emit_event(
        event=ORDER_PLACED,
        resource={
            "prefect.resource.id": placed.resource_id,
            "prefect.resource.name": f"order {placed.order.order_id}",
        },
        related=[
            {
                "prefect.resource.id": f"shop.customer.{placed.customer.customer_id}",
                "prefect.resource.role": "customer",
            }
        ],
        payload=placed.model_dump(mode="json"),
    )
    if event is None:
        from clvflow.errors import ConfigError

        raise ConfigError(
            "Prefect does not emit events here",
            hint="set PREFECT_API_URL to the Prefect server (clvflow serve prints it)",
        )
    if wait:
        EventsWorker.drain_all(timeout=30, at_exit=False)
    return str(event.id)
