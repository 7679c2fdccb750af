"""The console's HTML: Jinja templates from this package, autoescaped (every value a
customer or a file provides is text), undefined names are errors."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from clvflow.web.console import links
from clvflow.web.console.headers import IFRAME_SANDBOX

NAV = (
    ("overview", "Overview", links.overview()),
    ("segments", "Segments", links.PREFIX + "/segments"),
    ("customers", "Customers", links.PREFIX + "/customers"),
    ("preview", "Preview", links.PREFIX + "/preview"),
    ("report", "Report", links.report()),
)


def when(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A date or time for a table cell ('' when missing)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime(fmt)
    return str(value)


def cell(value: object) -> str:
    """Any attribute value as text: times without seconds' noise, floats rounded, missing
    values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" if value.time() != dt.time() else "%Y-%m-%d")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


ENV = Environment(
    loader=PackageLoader("clvflow.web.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["when"] = when
ENV.filters["cell"] = cell
ENV.globals.update(links=links, nav=NAV, sandbox=IFRAME_SANDBOX)


def render(
    request: Request, page: str, /, *, status: int = 200, section: str = "", **context: Any
) -> HTMLResponse:
    """The console page ``page`` (a template file); ``section`` marks the navigation's
    current entry."""
    console = request.app.state.console
    text = ENV.get_template(page).render(
        shop=console.web.project.config.shop.name,
        section=section,
        signed_in=console.access.enabled,
        **context,
    )
    return HTMLResponse(text, status_code=status)
