"""The campaign as a real Prefect flow run (session-wide test harness = a real local API)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clvflow.campaigns.catalog import load_campaigns
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ProjectFactory
from tests.test_campaign_run import FILES

pytestmark = pytest.mark.prefect


async def _flow_runs_and_artifacts() -> tuple[list[Any], list[Any]]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        runs = await client.read_flow_runs()
        artifacts = await client.read_artifacts()
    return runs, artifacts


def test_flow_run_sends_and_publishes_artifacts(
    prefect_api: None, make_project: ProjectFactory
) -> None:
    from clvflow.orchestration.flows import campaign_flow

    project = Project.load(make_project(FILES))
    campaign = load_campaigns(project.prefect_file)["everyone"]
    first = campaign_flow(
        campaign=campaign.name, spec=campaign.spec, as_of=AS_OF, project=str(project.root)
    )
    second = campaign_flow(
        campaign=campaign.name, spec=campaign.spec, as_of=AS_OF, project=str(project.root)
    )
    assert first["sent"] == 4 and second["sent"] == 0
    assert second["skipped"]["already_sent"] == 4

    runs, artifacts = asyncio.run(_flow_runs_and_artifacts())
    ours = [r for r in runs if r.name == "everyone · once · 2026-11-23 12:00"]
    assert len(ours) >= 2
    assert all(r.state is not None and r.state.is_completed() for r in ours)
    keys = {a.key for a in artifacts if a.key}
    assert {"everyone-counts", "everyone-summary"} <= keys
    table = next(
        a for a in artifacts if a.key == "everyone-counts" and a.flow_run_id in {r.id for r in ours}
    )
    assert "sent" in str(table.data)
