"""``GET /console/customers?q=`` (find a customer by id or email) and
``GET /console/customers/{id}``: their attributes (own, derived, predicted), segment
memberships, every message the ledger holds for them and their journey positions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from clvflow.errors import ClvflowError
from clvflow.journeys.catalog import load_journeys
from clvflow.rendering.templates import TemplateLibrary
from clvflow.segments.attributes import DERIVED, PREDICTED
from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.history import customer_messages, customer_skips, positions
from clvflow.web.console.pages import render
from clvflow.web.console.segments_page import AsOf, problem
from clvflow.web.console.state import console_of

router = APIRouter()


@router.get(links.PREFIX + "/customers")
def find(
    request: Request, q: Annotated[str, Query(max_length=320)] = "", as_of: AsOf = None
) -> Response:
    console = console_of(request)
    try:
        when = console.as_of(as_of)
    except AsOfError as exc:
        return problem(request, str(exc))
    found = console.snapshots.get(when).search(q) if q.strip() else []
    if len(found) == 1 and str(found[0]["customer_id"]).lower() == q.strip().lower():
        return RedirectResponse(links.customer(str(found[0]["customer_id"])), status_code=303)
    return render(
        request, "customers.html", section="customers", q=q, found=found, as_of=when,
        as_of_text=as_of or "",
    )  # fmt: skip


@router.get(links.PREFIX + "/customers/{customer_id}")
def customer(request: Request, customer_id: str, as_of: AsOf = None) -> HTMLResponse:
    console = console_of(request)
    try:
        when = console.as_of(as_of)
    except AsOfError as exc:
        return problem(request, str(exc))
    snapshot = console.snapshots.get(when)
    rows = snapshot.customers([customer_id])
    if not rows:
        return problem(request, f"There is no customer with id '{customer_id}'.", status=404)
    row = rows[0]
    own = {k: v for k, v in row.items() if k not in DERIVED and k != "last_order_id"}
    derived = {k: v for k, v in row.items() if k in DERIVED and k not in PREDICTED}
    derived["last_order_id"] = row.get("last_order_id")
    predicted = {k: v for k, v in row.items() if k in PREDICTED}
    ledger = console.web.ledger
    try:
        journeys = list(load_journeys(console.web.project.prefect_file).values())
        journey_problem = None
    except ClvflowError as exc:
        journeys, journey_problem = [], exc.render()
    return render(
        request, "customer.html", section="customers", as_of=when, as_of_text=as_of or "",
        customer_id=customer_id, own=own, derived=derived, predicted=predicted,
        memberships=snapshot.memberships(customer_id),
        messages=customer_messages(ledger, customer_id),
        skips=customer_skips(ledger, customer_id),
        positions=positions(ledger, journeys, customer_id), journey_problem=journey_problem,
        templates=TemplateLibrary.for_project(console.web.project).names(),
    )  # fmt: skip
