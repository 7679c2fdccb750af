"""Put the console into the web app: its state, its door (:mod:`.gate`), its pages and its
stylesheet; and, while the app runs, a thread that computes the shop's snapshot as of now
ahead of the first page (with a large shop that takes seconds)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from importlib.resources import files

from fastapi import FastAPI, Response

from clvflow.web.console import (
    customers_page,
    dry_run_page,
    gate,
    journey_page,
    links,
    overview,
    preview_page,
    report_page,
    segments_page,
)
from clvflow.web.console.access import Access
from clvflow.web.console.prefect_runs import PrefectRuns
from clvflow.web.console.snapshots import Snapshots
from clvflow.web.console.state import ConsoleState
from clvflow.web.state import WebState

log = logging.getLogger(__name__)
ROUTERS = (
    gate.router,
    overview.router,
    segments_page.router,
    customers_page.router,
    preview_page.router,
    dry_run_page.router,
    journey_page.router,
    report_page.router,
)


def stylesheet() -> Response:
    css = (files("clvflow.web.console") / "static" / "console.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css")


def mount_console(
    app: FastAPI, web: WebState, env: Mapping[str, str] | None = None
) -> ConsoleState:
    """The console's state (also ``app.state.console``); its routes and middleware added."""
    env = os.environ if env is None else env
    console = ConsoleState(
        web=web,
        access=Access.from_env(web.key, env),
        snapshots=Snapshots(web.project),
        prefect=PrefectRuns(env),
    )
    app.state.console = console
    app.middleware("http")(gate.gate)
    for router in ROUTERS:
        app.include_router(router)
    app.add_api_route(f"{links.PREFIX}/static/console.css", stylesheet, methods=["GET"])
    return console


class Warmer:
    """Computes the snapshot as of the console's now in a thread once the app starts (its
    composer's tables follow in a thread of their own); a failure is logged, and the page
    that needs it computes it again."""

    def __init__(self, console: ConsoleState) -> None:
        self.console = console
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            self.console.snapshots.get(self.console.as_of(None)).counts()
        except Exception:
            log.exception("the console could not prepare the shop's snapshot")

    def start(self) -> None:
        if self.console.access.enabled:
            self.thread = threading.Thread(target=self._run, name="clvflow-console-warm")
            self.thread.daemon = True
            self.thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Close the console's snapshots (one still being made is closed when done)."""
        if self.thread is not None:
            self.thread.join(timeout)
        self.console.close()
