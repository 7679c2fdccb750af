"""Run campaign flows in this process against the configured Prefect API (or, with none
configured, Prefect's local ephemeral server on PREFECT_HOME's database, where a later
``prefect server start`` shows the runs)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clvflow.campaigns.catalog import Campaign
from clvflow.journeys.catalog import Journey


def quiet_prefect() -> None:
    """The terminal shows clvflow's own summaries and error messages; Prefect's logs still
    reach the Prefect API (and so the UI) in full, but its console handler stays silent,
    so an expected error (a bad API key, say) is one message, not a task traceback."""
    import logging

    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    setup_logging()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.setLevel(logging.CRITICAL)


@contextmanager
def flow_session() -> Iterator[None]:
    """Settings for flows run from the CLI: no heartbeat thread (its exit waits for it)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_flow(
    campaign: Campaign, project_dir: str, as_of: dt.datetime | None, dry_run: bool
) -> dict[str, Any]:
    """One campaign as one Prefect flow run (tagged like its deployment); returns the run
    summary."""
    from prefect import tags

    from clvflow.orchestration.flows import campaign_flow

    with tags("clvflow", f"campaign:{campaign.name}", *campaign.tags):
        result: dict[str, Any] = campaign_flow(
            campaign=campaign.name,
            spec=campaign.spec,
            as_of=as_of,
            dry_run=dry_run,
            project=project_dir,
        )
    return result


def run_journey_flow(
    journey: Journey, project_dir: str, as_of: dt.datetime | None, dry_run: bool
) -> dict[str, Any]:
    """One journey run as one Prefect flow run (tagged like its deployment)."""
    from prefect import tags

    from clvflow.orchestration.journey_flow import journey_flow

    with tags("clvflow", f"journey:{journey.name}", *journey.tags):
        result: dict[str, Any] = journey_flow(
            campaign=journey.name,
            spec=journey.spec,
            as_of=as_of,
            dry_run=dry_run,
            project=project_dir,
        )
    return result
