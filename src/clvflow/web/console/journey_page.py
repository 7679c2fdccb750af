"""``GET /console/journeys/{name}``: per step, how many entries wait there and how many
messages were sent, skipped (by reason), exited and converted (``clvflow journeys show``),
as a table and a funnel; and the report's measurement of the journey since ``?since=``
(default 90 days before the as-of): per step and against its holdout."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from clvflow.errors import ClvflowError
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.status import JourneyStatus, StepStatus, journey_status
from clvflow.measurement.journeys import JourneyResult
from clvflow.reporting.report import measure_campaigns
from clvflow.reporting.tables import journey_note, money, money_interval, pct, points
from clvflow.segments.times import TimeExpressionError, resolve_time
from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.fingerprint import ledger_fingerprint
from clvflow.web.console.pages import render
from clvflow.web.console.segments_page import AsOf, problem
from clvflow.web.console.state import ConsoleState, console_of

router = APIRouter()


@dataclass(frozen=True)
class Funnel:
    """A step's row of the funnel."""

    at: StepStatus

    @property
    def skipped(self) -> int:
        return sum(self.at.skipped.values())

    @property
    def exited(self) -> int:
        return sum(self.at.exited.values())

    @property
    def reached(self) -> int:
        return self.at.sent + self.at.failed + self.skipped + self.exited + self.at.waiting


DEFAULT_SINCE = "90 days ago"
Since = Annotated[str, Query(max_length=100)]


def since_of(text: str, as_of: dt.datetime) -> dt.datetime:
    try:
        start = resolve_time(text.strip() or DEFAULT_SINCE, as_of)
    except TimeExpressionError as exc:
        raise AsOfError(str(exc)) from None
    if start >= as_of:
        raise AsOfError(f"{start:%Y-%m-%d %H:%M} is not before {as_of:%Y-%m-%d %H:%M}")
    return start


def measured(
    console: ConsoleState, since: dt.datetime, as_of: dt.datetime
) -> dict[str, JourneyResult]:
    """The report's journey measurements for the period, kept per data and ledger state."""
    project = console.web.project
    key = ("measure", since, console.snapshots.key(as_of), ledger_fingerprint(console.web.ledger))
    results = console.results.get(
        key, lambda: {r.journey: r for r in measure_campaigns(project, since, as_of).journeys}
    )
    return dict(results)


@router.get(links.PREFIX + "/journeys/{name}")
def journey_page(
    request: Request, name: str, as_of: AsOf = None, since: Since = ""
) -> HTMLResponse:
    console = console_of(request)
    project = console.web.project
    try:
        when = console.as_of(as_of)
        start = since_of(since, when)
        journey = load_journeys(project.prefect_file).get(name)
    except AsOfError as exc:
        return problem(request, str(exc))
    except ClvflowError as exc:
        return problem(request, exc.render())
    if journey is None:
        return problem(request, f"There is no journey named '{name}'.", status=404)
    snapshot = console.snapshots.get(when)
    key = ("journey", name, console.snapshots.key(when), ledger_fingerprint(console.web.ledger))

    def standing() -> JourneyStatus:
        with snapshot.lock:
            return journey_status(
                console.web.ledger, journey, snapshot.data, project.config.shop.default_locale
            )

    status: JourneyStatus = console.results.get(key, standing)
    result = measured(console, start, when).get(name)
    steps = [Funnel(at) for at in status.steps]
    return render(
        request, "journey.html", section="overview", as_of=when, as_of_text=as_of or "",
        journey=journey, standing=status, steps=steps,
        widest=max([s.reached for s in steps] + [1]), result=result,
        note=journey_note(result) if result else "", since=start, since_text=since,
        currency=project.config.shop.currency, pct=pct, money=money, points=points,
        money_interval=money_interval,
    )  # fmt: skip
