"""``GET /console/``: every campaign and journey of prefect.yaml with its schedule or
trigger and its latest runs (counts from the ledger, links to the Prefect UI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clvflow.campaigns.catalog import load_campaigns
from clvflow.errors import ClvflowError
from clvflow.journeys.catalog import load_journeys
from clvflow.project.journey_spec import ORDER_PLACED
from clvflow.web.console import links
from clvflow.web.console.pages import render
from clvflow.web.console.prefect_runs import flow_run_at
from clvflow.web.console.runs import LedgerRun, latest_runs
from clvflow.web.console.state import ConsoleState, console_of

router = APIRouter()


@dataclass
class Deployment:
    name: str
    kind: str  # campaign | journey
    description: str
    when: list[str]  # schedules and triggers, as text
    what: str  # segment → template, or entry → steps
    page: str | None  # the dry run or the funnel
    runs: list[LedgerRun] = field(default_factory=list)


def when_text(
    schedules: tuple[dict[str, object], ...], triggers: tuple[dict[str, object], ...]
) -> list[str]:
    out = []
    for schedule in schedules:
        if "cron" in schedule:
            out.append(f"cron {schedule['cron']} ({schedule.get('timezone', 'UTC')})")
        elif "interval" in schedule:
            out.append(f"every {schedule['interval']} s")
        else:
            out.append(str(schedule))
    for trigger in triggers:
        expect = trigger.get("expect")
        events = ", ".join(map(str, expect)) if isinstance(expect, list) else "an event"
        out.append(f"on {events}")
    return out or ["only when run by hand"]


def deployments(console: ConsoleState) -> list[Deployment]:
    project = console.web.project
    out: list[Deployment] = []
    for name, campaign in sorted(load_campaigns(project.prefect_file).items()):
        spec = campaign.spec
        templates = ", ".join(spec.templates)
        triggered = campaign.triggered or spec.segment == ORDER_PLACED
        out.append(
            Deployment(
                name, "campaign", campaign.description,
                when_text(campaign.schedules, campaign.triggers),
                f"segment {spec.segment} → {templates}",
                None if triggered else links.dry_run(name),
            )
        )  # fmt: skip
    for name, journey in sorted(load_journeys(project.prefect_file).items()):
        entry = journey.spec.entry
        start = f"segment {entry.segment}" if entry.segment else f"event {entry.event}"
        steps = " → ".join(s.name for s in journey.spec.steps)
        out.append(
            Deployment(
                name, "journey", journey.description,
                when_text(journey.schedules, journey.triggers), f"{start}: {steps}",
                links.journey(name),
            )
        )  # fmt: skip
    for deployment in out:
        deployment.runs = latest_runs(
            console.web.ledger, deployment.name, journey=deployment.kind == "journey"
        )
        flow_runs = console.prefect.flow_runs(deployment.name) if deployment.runs else []
        for run in deployment.runs:
            found = flow_run_at(run.started_at, flow_runs)
            run.prefect_url = console.prefect.run_url(found) if found else None
    return out


@router.get(links.overview())
def overview(request: Request) -> HTMLResponse:
    console = console_of(request)
    try:
        found, problem = deployments(console), None
    except ClvflowError as exc:
        found, problem = [], exc.render()
    return render(
        request, "overview.html", section="overview", deployments=found, problem=problem,
        prefect=console.prefect,
    )  # fmt: skip
