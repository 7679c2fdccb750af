"""``GET /console/segments`` (every segment with its member count) and
``GET /console/segments/{name}``: description, count, compiled SQL and a page of members
with the attributes the segment reads; or the segment file's error."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from clvflow.web.console import links
from clvflow.web.console.clock import AsOfError
from clvflow.web.console.pages import render
from clvflow.web.console.state import console_of

router = APIRouter()
PAGE_SIZE = 50
SHOWN = ("customer_id", "email", "first_name")

AsOf = Annotated[str | None, Query(description="ISO time, 'today', '3 days ago'…")]


def problem(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return render(request, "problem.html", status=status, message=message)


@router.get(links.PREFIX + "/segments")
def segments(request: Request, as_of: AsOf = None) -> HTMLResponse:
    console = console_of(request)
    try:
        when = console.as_of(as_of)
    except AsOfError as exc:
        return problem(request, str(exc))
    snapshot = console.snapshots.get(when)
    return render(
        request, "segments.html", section="segments", as_of=when, as_of_text=as_of or "",
        entries=list(snapshot.segments.values()), counts=snapshot.counts(),
    )  # fmt: skip


@router.get(links.PREFIX + "/segments/{name}")
def segment(
    request: Request, name: str, as_of: AsOf = None, page: Annotated[int, Query(ge=1)] = 1
) -> HTMLResponse:
    console = console_of(request)
    try:
        when = console.as_of(as_of)
    except AsOfError as exc:
        return problem(request, str(exc))
    snapshot = console.snapshots.get(when)
    entry = snapshot.entry(name)
    if entry is None:
        return problem(request, f"There is no segment named '{name}'.", status=404)
    columns = [*SHOWN, *(c for c in entry.reads if c not in SHOWN)]
    count = snapshot.counts().get(name, 0)
    members = (
        snapshot.members(name, columns, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        if entry.predicate
        else []
    )
    return render(
        request, "segment.html", section="segments", as_of=when, as_of_text=as_of or "",
        entry=entry, count=count, columns=columns, members=members, page=page,
        pages=max(1, -(-count // PAGE_SIZE)),
    )  # fmt: skip
