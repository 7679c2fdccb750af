"""``GET /console/campaigns/{name}/dry-run``: what a run of the campaign would do now (or
``?as_of=``), kept per as-of, data, templates and ledger state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clvflow.campaigns.catalog import load_campaigns
from clvflow.errors import ClvflowError
from clvflow.project.journey_spec import ORDER_PLACED
from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.dry_run import DryRun, dry_run
from clvflow.web.console.fingerprint import ledger_fingerprint, templates_fingerprint
from clvflow.web.console.pages import render
from clvflow.web.console.segments_page import AsOf, problem
from clvflow.web.console.state import console_of

router = APIRouter()


@router.get(links.PREFIX + "/campaigns/{name}/dry-run")
def campaign_dry_run(request: Request, name: str, as_of: AsOf = None) -> HTMLResponse:
    console = console_of(request)
    project = console.web.project
    try:
        when = console.as_of(as_of)
        campaign = load_campaigns(project.prefect_file).get(name)
    except AsOfError as exc:
        return problem(request, str(exc))
    except ClvflowError as exc:
        return problem(request, exc.render())
    if campaign is None:
        return problem(request, f"There is no campaign named '{name}'.", status=404)
    if campaign.triggered or campaign.spec.segment == ORDER_PLACED:
        return problem(request, f"'{name}' is sent on each order, not to a segment.")
    snapshot = console.snapshots.get(when)
    key = (
        "dry-run", name, console.snapshots.key(when), templates_fingerprint(project),
        ledger_fingerprint(console.web.ledger), project.prefect_file.stat().st_mtime_ns,
    )  # fmt: skip
    try:
        result: DryRun = console.results.get(
            key, lambda: dry_run(snapshot, console.web.ledger, campaign)
        )
    except ClvflowError as exc:
        return problem(request, exc.render())
    return render(
        request, "dry_run.html", section="overview", as_of=when, as_of_text=as_of or "",
        run=result, spec=campaign.spec,
    )  # fmt: skip
