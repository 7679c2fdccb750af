"""Suppression sync as a scheduled flow: SendGrid's unsubscribes, bounces and spam reports
into the ledger, so the next plan skips them."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from clvflow.delivery.suppressions import sync_project_suppressions
from clvflow.orchestration.secrets import sendgrid_key
from clvflow.project.layout import Project


@task(name="sync suppressions", retries=3, retry_delay_seconds=30)
def sync_task(project: str) -> dict[str, int]:
    loaded = Project.load(project)
    return dict(sync_project_suppressions(loaded, sendgrid_key(loaded)))


@flow(name="suppression sync", flow_run_name="suppression sync", log_prints=False)
def suppression_sync_flow(project: str = ".") -> dict[str, int]:
    """Copy SendGrid's suppression lists into the ledger (nothing to do with the outbox)."""
    logger = get_run_logger()
    if Project.load(project).config.delivery.backend != "sendgrid":
        logger.info("delivery backend is not sendgrid: nothing to sync")
        return {}
    added = sync_task(project)
    logger.info("new suppressions: %s", added or "none")
    return added
