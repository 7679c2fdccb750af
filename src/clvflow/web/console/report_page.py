"""``GET /console/report``: the measurement report (``clvflow report``'s self-contained
page) for ``?since=`` (default 90 days before the as-of) with the console's bar on top; kept
per period, data and ledger state. ``GET /console/samples/{campaign}/{file}``: a rendered
sample a run wrote under ``.clvflow/samples/``, shown as an email is (no script)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from clvflow.pipeline.samples import SAMPLES
from clvflow.reporting.html import render_html
from clvflow.reporting.report import build_report
from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.fingerprint import ledger_fingerprint
from clvflow.web.console.headers import EMAIL_CSP
from clvflow.web.console.journey_page import Since, since_of
from clvflow.web.console.pages import ENV
from clvflow.web.console.segments_page import AsOf, problem
from clvflow.web.console.state import console_of

router = APIRouter()
SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


@router.get(links.report())
def report(request: Request, as_of: AsOf = None, since: Since = "") -> Response:
    console = console_of(request)
    project = console.web.project
    try:
        when = console.as_of(as_of)
        start = since_of(since, when)
    except AsOfError as exc:
        return problem(request, str(exc))
    key = ("report", start, console.snapshots.key(when), ledger_fingerprint(console.web.ledger))
    page: str = console.results.get(key, lambda: render_html(build_report(project, start, when)))
    bar = ENV.get_template("report_bar.html").render(
        since=start, as_of=when, since_text=since, as_of_text=as_of or ""
    )
    page = page.replace("<head>", '<head><link rel="icon" href="data:,">', 1)
    return HTMLResponse(page.replace("<body>", "<body>" + bar, 1))


@router.get(links.PREFIX + "/samples/{campaign}/{file_name}")
def sample(request: Request, campaign: str, file_name: str) -> Response:
    console = console_of(request)
    path = console.web.project.state_dir / SAMPLES / campaign / file_name
    if not (SAFE.match(campaign) and SAFE.match(file_name) and file_name.endswith(".html")):
        return problem(request, "That is not a sample's name.", status=404)
    if not path.is_file():
        return problem(request, "This sample is gone (`.clvflow/samples/` was cleared).", 404)
    headers = {"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN"}
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=headers)
