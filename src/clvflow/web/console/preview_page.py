"""``GET /console/preview?template=&locale=&customer=&campaign=``: one customer's email as
a run sends it (``campaign`` names a campaign, or a journey's step as ``journey/step``: its
unsubscribe link, promo and headers; its A/B variants side by side), with subject,
preheader, headers, the HTML in a sandboxed frame and the text part."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from clvflow.campaigns.catalog import load_campaigns
from clvflow.errors import ClvflowError
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.steps import step_job
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.rendering.templates import TemplateLibrary
from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.compose import PREVIEW, Message, compose
from clvflow.web.console.pages import render
from clvflow.web.console.segments_page import AsOf, problem
from clvflow.web.console.snapshot import Snapshot
from clvflow.web.console.state import ConsoleState, console_of

router = APIRouter()
Text = Annotated[str, Query(max_length=320)]


def targets(
    console: ConsoleState, as_of: dt.datetime
) -> dict[str, tuple[CampaignSpec, str | None]]:
    """What can send: each campaign, and each journey step as ``journey/step`` (its spec as
    the step's pipeline job has it, and the step)."""
    prefect_file = console.web.project.prefect_file
    out: dict[str, tuple[CampaignSpec, str | None]] = {
        name: (c.spec, None) for name, c in sorted(load_campaigns(prefect_file).items())
    }
    for name, journey in sorted(load_journeys(prefect_file).items()):
        for index, step in enumerate(journey.spec.steps):
            job = step_job(journey, index, as_of, dry_run=True)
            out[f"{name}/{step.name}"] = (job.spec, job.step)
    return out


def find_customer(
    snapshot: Snapshot, text: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The customer with id ``text``, or the one whose email starts with it; else the
    candidates."""
    wanted = text.strip()
    if not wanted:
        return None, []
    rows = snapshot.customers([wanted])
    if rows:
        return rows[0], []
    found = snapshot.search(wanted)
    if len(found) == 1:
        return snapshot.customers([str(found[0]["customer_id"])])[0], []
    return None, found


def renderings(spec: CampaignSpec | None, template: str) -> list[tuple[str, str]]:
    """(variant, template) to render: a campaign's variants side by side, else one."""
    if spec is not None and spec.variants and (not template or template in spec.templates):
        return [(v.name, v.template) for v in spec.variants]
    if template:
        return [("", template)]
    return [("", spec.template)] if spec is not None else []


@router.get(links.PREFIX + "/preview")
def preview(
    request: Request,
    template: Text = "",
    locale: Text = "",
    customer: Text = "",
    campaign: Text = "",
    as_of: AsOf = None,
) -> HTMLResponse:
    console = console_of(request)
    try:
        when = console.as_of(as_of)
        choices = targets(console, when)
    except AsOfError as exc:
        return problem(request, str(exc))
    except ClvflowError as exc:
        return problem(request, exc.render())
    snapshot = console.snapshots.get(when)
    shop = console.web.project.config.shop
    names = TemplateLibrary.for_project(console.web.project).names()
    spec, step = choices.get(campaign, (None, None))
    row, candidates = find_customer(snapshot, customer)
    messages: list[Message] = []
    unknown = [t for _, t in renderings(spec, template) if t not in names]
    if row is not None and not unknown:
        name = campaign.split("/", 1)[0] if spec is not None else PREVIEW
        with snapshot.rendering() as (_, composer):
            messages = [
                compose(
                    composer,
                    shop,
                    chosen,
                    row,
                    campaign=name,
                    spec=spec,
                    variant=variant,
                    locale=locale or None,
                    step=step,
                )
                for variant, chosen in renderings(spec, template)
            ]
    return render(
        request, "preview.html", section="preview", as_of=when, as_of_text=as_of or "",
        templates=names, locales=shop.locales, targets=list(choices),
        template=template, locale=locale, customer=customer, campaign=campaign,
        row=row, candidates=candidates, messages=messages, unknown=unknown,
    )  # fmt: skip
