"""The console's door: every path under ``/console`` passes here first.

- The console is off without ``CLVFLOW_CONSOLE_PASSWORD``: every page answers 503 and says
  how to turn it on.
- A request with the password (HTTP Basic, any user name) or a valid session cookie goes
  through; a browser without either is sent to the sign-in form (303), anything else gets
  401 with a Basic challenge.
- Every console response carries the security headers (:mod:`.headers`) and the time the
  server took (``Server-Timing: app;dur=<ms>``).

Paths outside ``/console`` (unsubscribe pages, webhooks) are not touched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from clvflow.web.console import links
from clvflow.web.console.access import COOKIE, PASSWORD_ENV, SESSION_SECONDS
from clvflow.web.console.headers import secure
from clvflow.web.console.pages import render

LOGIN = f"{links.PREFIX}/login"
LOGOUT = f"{links.PREFIX}/logout"
STATIC = f"{links.PREFIX}/static/"
MAX_FORM = 10_000

router = APIRouter()
CallNext = Callable[[Request], Awaitable[Response]]


def in_console(path: str) -> bool:
    return path == links.PREFIX or path.startswith(links.PREFIX + "/")


def signed_in(request: Request) -> bool:
    access = request.app.state.console.access
    return bool(
        access.basic_ok(request.headers.get("authorization"))
        or access.session_ok(request.cookies.get(COOKIE))
    )


def _wants_page(request: Request) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and "authorization" not in request.headers
    )


def _off(request: Request) -> HTMLResponse:
    return render(request, "off.html", status=503, variable=PASSWORD_ENV)


async def gate(request: Request, call_next: CallNext) -> Response:
    """The middleware (see the module's docstring)."""
    path = request.url.path
    if not in_console(path):
        return await call_next(request)
    started = time.perf_counter()
    console = request.app.state.console
    if path.startswith(STATIC):
        response = await call_next(request)
        secure(response.headers, cache=True)
        return response
    if not console.access.enabled:
        response = _off(request)
    elif path == LOGIN or signed_in(request):
        response = await call_next(request)
    elif _wants_page(request):
        target = path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"{LOGIN}?{urlencode({'next': target})}", status_code=303)
    else:
        response = Response(
            "sign in: HTTP Basic auth with the console password (any user name)\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="clvflow console", charset="UTF-8"'},
            media_type="text/plain",
        )
    secure(response.headers)
    response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - started):.1f}"
    return response


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if target and in_console(target.split("?", 1)[0]) and not target.startswith("//"):
        return target
    return links.overview()


@router.get(LOGIN)
def login_form(
    request: Request, target: Annotated[str | None, Query(alias="next")] = None
) -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(target), problem=None)


@router.post(LOGIN)
async def login(request: Request) -> Response:
    body = await request.body()
    form = parse_qs(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True)
    target = _safe_next(form.get("next", [""])[0])
    console = request.app.state.console
    if not console.access.password_ok((form.get("password") or [""])[0]):
        return render(request, "login.html", status=401, next=target, problem="Wrong password.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        console.access.new_session(),
        max_age=SESSION_SECONDS,
        path=links.PREFIX,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
    )
    return response


@router.post(LOGOUT)
def logout() -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(COOKIE, path=links.PREFIX)
    return response
