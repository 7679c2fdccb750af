"""The campaign as a real Prefect flow run (session-wide test harness = a real local API)."""

from __future__ import annotations

import asyncio
import json
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


@pytest.mark.slow
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


def test_the_ui_form_is_typed_by_the_parameter_models() -> None:
    from prefect.utilities.callables import parameter_schema

    from clvflow.orchestration.flows import campaign_flow
    from clvflow.orchestration.order_flow import order_flow

    schema = parameter_schema(campaign_flow).model_dump()
    spec = schema["definitions"]["CampaignSpec"]
    assert {"segment", "template", "variants", "send_window", "attribution_days", "holdout_percent",
            "promo", "batch_size", "workers", "resend"} <= set(spec["properties"])  # fmt: skip
    assert spec["additionalProperties"] is False
    assert spec["properties"]["attribution_days"]["default"] == 5
    variant = schema["definitions"]["Variant"]
    assert set(variant["properties"]) == {"name", "template", "weight"}
    assert schema["properties"]["spec"]["$ref"].endswith("/CampaignSpec")
    order = parameter_schema(order_flow).model_dump()
    assert order["properties"]["order"]["$ref"].endswith("/OrderPlaced")
    assert {"order", "customer"} == set(order["definitions"]["OrderPlaced"]["properties"])


async def _artifacts_and_events(flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.events.filters import EventFilter, EventNameFilter

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        page = await client.read_events(
            filter=EventFilter(event=EventNameFilter(prefix=["clvflow.campaign."])), limit=50
        )
    return artifacts, page.events


@pytest.mark.slow
def test_ab_flow_run_publishes_counts_per_variant_sample_progress_and_events(
    prefect_api: None, make_project: ProjectFactory
) -> None:
    import time
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from clvflow.orchestration.flows import campaign_flow
    from tests.test_campaign_spec import FILES as AB_FILES

    project = Project.load(make_project(AB_FILES))
    campaign = load_campaigns(project.prefect_file)["ab"]
    summary = campaign_flow(
        campaign="ab", spec=campaign.spec, as_of=AS_OF, project=str(project.root)
    )
    assert summary["sent"] == 4

    async def _run() -> Any:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=["ab · once · 2026-11-23 12:00"])
                )
            )
        return runs[-1]

    run = asyncio.run(_run())
    deadline = time.monotonic() + 30
    while True:
        artifacts, events = asyncio.run(_artifacts_and_events(run.id))
        ours = [e for e in events if e.resource.id == "clvflow.campaign.ab"]
        if {e.event for e in ours} >= {"clvflow.campaign.started", "clvflow.campaign.finished"}:
            break
        assert time.monotonic() < deadline, [e.event for e in events]
        time.sleep(0.5)
    finished = next(e for e in ours if e.event == "clvflow.campaign.finished")
    assert finished.payload["sent"] == 4 and finished.payload["run_id"] == summary["run_id"]

    by_type = {a.type: a for a in artifacts}
    table = by_type["table"].data
    table = json.loads(table) if isinstance(table, str) else table
    rows = {r["what"]: r["count"] for r in table}
    variants = summary["by_variant"]
    assert sum(variants.values()) == 4
    for name, count in variants.items():
        assert rows[f"variant {name}: sent"] == count
    assert rows["sent"] == 4 and rows["segment members"] == 6
    assert rows["skipped: no marketing consent"] == 1 and rows["skipped: invalid address"] == 1
    # the tiny shop: C1 en, C2 hu, C4 hu, C5 without a locale (the shop's default, en)
    assert rows["locale en: sent"] == 2 and rows["locale hu: sent"] == 2
    assert by_type["progress"].data == 100.0
    # link artifacts are markdown too: the summary is the one keyed '<campaign>-summary'
    markdown = next(a for a in artifacts if a.key == "ab-summary").data
    sample_links = [a for a in artifacts if (a.key or "").startswith("ab-sample-")]
    assert len(sample_links) == len(variants)
    # each sample links to its page in the console, under the shop's public web URL
    console = "https://shop.example/email/console/samples/ab/"
    lines = [line for line in markdown.splitlines() if f"]({console}" in line]
    assert len(lines) == len(variants), markdown
    for line in lines:
        link, path = line.split("](")[1].split(")")[0], line.split("`")[1]
        sample = Path(path)
        assert unquote(urlparse(link).path).endswith(f"/ab/{sample.name}")
        assert sample.is_file() and "Unsubscribe" in sample.read_text()
        assert any(f"({link})" in str(a.data) for a in sample_links)  # the link artifact too


@pytest.mark.slow
def test_order_outside_the_send_window_waits_and_is_not_sent(
    prefect_api: None, make_project: ProjectFactory
) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from clvflow.campaigns.triggered import OrderPlaced
    from clvflow.orchestration.order_flow import order_flow
    from clvflow.project.campaign_spec import SendWindow
    from tests.test_order_events import FILES as ORDER_FILES

    project = Project.load(make_project(ORDER_FILES))
    spec = load_campaigns(project.prefect_file)["thank-you"].spec
    now = dt.datetime.now(ZoneInfo("Europe/Budapest"))  # the tiny shop's time zone
    closed = SendWindow(
        start=f"{(now + dt.timedelta(hours=2)).hour:02d}:00",
        end=f"{(now + dt.timedelta(hours=3)).hour:02d}:00",
    )
    placed = OrderPlaced.model_validate(
        {"order": {"order_id": "O2"}, "customer": {"customer_id": "C1"}}
    )
    summary = order_flow(
        campaign="thank-you",
        spec=spec.model_copy(update={"send_window": closed}),
        order=placed,
        project=str(project.root),
    )
    assert (summary["sent"], summary["waiting"], summary["occurrence"]) == (0, 1, "O2")
    assert not (project.outbox_dir / "thank-you").exists()
    # the window open: the same order is sent now
    again = order_flow(campaign="thank-you", spec=spec, order=placed, project=str(project.root))
    assert again["sent"] == 1
