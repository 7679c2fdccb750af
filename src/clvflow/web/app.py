"""The ASGI app (FastAPI): ``create_app(project)``; ``clvflow web`` serves it. Public:
the unsubscribe pages and the webhooks; behind a password: the console (``/console/``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from clvflow.compliance.secret import signing_key
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.web import orders, sendgrid_events, unsubscribe
from clvflow.web.console.mount import Warmer, mount_console
from clvflow.web.state import WebState

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"


def create_app(project: Project, *, order_emitter: orders.Emitter | None = None) -> FastAPI:
    """The app; ``order_emitter`` turns a verified order webhook into an event (default:
    a Prefect ``shop.order.placed`` event)."""
    cfg = project.config
    state = WebState(
        project=project,
        ledger=Ledger(project.ledger_url),
        key=signing_key(project.state_dir, allow_local=cfg.delivery.backend == "outbox"),
        webhook_public_key=os.environ.get(PUBLIC_KEY_ENV) or None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the console's snapshot is prepared while the app runs; the ledger's pooled
        # connections are closed when the server stops, not left to the garbage collector
        warmer: Warmer = app.state.console_warmer
        warmer.start()
        try:
            yield
        finally:
            warmer.stop()
            state.ledger.close()

    app = FastAPI(
        title="clvflow", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.clvflow = state
    app.include_router(unsubscribe.router)
    app.include_router(sendgrid_events.router)
    app.state.order_webhook_secret = os.environ.get(orders.SECRET_ENV) or None
    app.state.order_emitter = order_emitter or orders.emit_with_prefect
    app.include_router(orders.router)
    app.state.console_warmer = Warmer(mount_console(app, state))

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
