"""The report as a real Prefect flow run: its artifacts (tables, markdown with the charts,
images, a link to the HTML file) are in the API afterwards."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import re
from typing import Any
from uuid import UUID

import pytest
from PIL import Image
from sqlalchemy import update

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.measurement.charts import CLV_SIZE, COHORT_SIZE
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ProjectFactory
from tests.test_campaign_run import FILES

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


async def _artifacts(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return list(
            await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        )


def _png_size(uri: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as image:
        assert image.format == "PNG"
        return image.size


def test_report_flow_publishes_artifacts(prefect_api: None, make_project: ProjectFactory) -> None:
    from clvflow.orchestration.report_flow import report_flow

    welcome = """
  - name: welcome
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: welcome
      spec:
        entry: {segment: everyone}
        steps:
          - {name: hello, template: hello}
          - {name: again, wait: 2 days, template: hello}
"""
    root = make_project(FILES)
    (root / "prefect.yaml").write_text((root / "prefect.yaml").read_text() + welcome)
    project = Project.load(root)
    run_campaign(project, load_campaigns(project.prefect_file)["win-back"], as_of=AS_OF)
    run_journey(project, load_journeys(project.prefect_file)["welcome"], as_of=AS_OF)
    ledger = Ledger(project.ledger_url)
    sent = dt.datetime(2026, 11, 23, 11, 0)
    with ledger.engine.begin() as con:
        con.execute(update(messages).values(planned_at=sent, finished_at=sent))
    ledger.close()

    state = report_flow(
        project=str(project.root),
        since="2026-11-01",
        as_of=dt.datetime(2026, 11, 30, 12),
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    assert result["since"] == "2026-11-01T00:00:00" and "win-back" in result["verdicts"]
    assert (project.root / "reports" / "report.html").is_file()

    artifacts = {a.key: a for a in asyncio.run(_artifacts(state.state_details.flow_run_id))}
    assert {
        "clv-report-campaigns", "clv-report-customers", "clv-report-experiments",
        "clv-report-attribution", "clv-report-metrics", "clv-report-cohort-retention",
        "clv-report-clv-distribution", "clv-report-html",
    } <= set(artifacts)  # fmt: skip
    campaigns = str(artifacts["clv-report-campaigns"].data)
    assert "win-back" in campaigns and "Too small to conclude" in campaigns
    customers = str(artifacts["clv-report-customers"].data)
    uris = re.findall(r"\((data:image/png;base64,[A-Za-z0-9+/=]+)\)", customers)
    assert [_png_size(u) for u in uris] == [COHORT_SIZE, CLV_SIZE]
    assert _png_size(str(artifacts["clv-report-cohort-retention"].data)) == COHORT_SIZE
    assert _png_size(str(artifacts["clv-report-clv-distribution"].data)) == CLV_SIZE
    assert "retention rate" in str(artifacts["clv-report-metrics"].data)
    table = str(artifacts["clv-report-experiments"].data)
    assert "win-back" in table and "holdout" in table
    steps = str(artifacts["clv-report-journey-welcome"].data)
    assert "hello" in steps and "recipients" in steps
    assert "No holdout" in str(artifacts["clv-report-journey-welcome"].description)
    link = str(artifacts["clv-report-html"].data)
    assert (project.root / "reports" / "report.html").is_file()
    # the link opens the report in the console (the web app's public URL), not a local file
    assert f"({project.config.web_base_url}/console/report)" in link
