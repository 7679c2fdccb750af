"""``clvflow serve``: a Prefect server (started or found), every deployment of prefect.yaml
served from this process so schedules and triggers fire, and the web app beside it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clvflow.cli.options import ProjectOption
from clvflow.project.layout import Project

out = Console(soft_wrap=True)


def _start_web(project: Project, host: str, port: int) -> threading.Thread:
    import uvicorn

    from clvflow.web.app import create_app

    config = uvicorn.Config(create_app(project), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="clvflow-web", daemon=True)
    thread.start()
    return thread


def serve(
    project: ProjectOption = Path("."),
    host: Annotated[str, typer.Option("--host", help="Interface of the Prefect server.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="Port of the Prefect server.")] = 4200,
    web_host: Annotated[str, typer.Option("--web-host", help="Interface of the web app.")] = (
        "127.0.0.1"
    ),
    web_port: Annotated[int, typer.Option("--web-port", help="Port of the web app.")] = 8000,
    web: Annotated[
        bool, typer.Option("--web/--no-web", help="Start the web app (webhooks, unsubscribe).")
    ] = True,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only this deployment (repeatable).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many flow runs at once.")
    ] = None,
) -> int:
    """Start (or connect to) a Prefect server, serve every campaign in prefect.yaml so its
    schedules and triggers fire here, and start the web app beside it."""
    from clvflow.orchestration.server import connect_or_start

    loaded = Project.load(project)
    server = connect_or_start(host, port, loaded.state_dir)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        from clvflow.orchestration.serve import register_deployments, run_until_stopped

        # flow runs start in the project folder, and their entrypoints are paths from it
        os.chdir(loaded.root)
        # the deployments and their triggers first: the web app turns orders into events,
        # and an event that comes before its trigger exists starts nothing
        runner, names = register_deployments(loaded, only, limit)
        how = "started here" if server.started_here else "already running"
        out.print(f"Prefect UI: {server.ui_url}  (API {server.api_url}, {how})")
        out.print(f"serving {len(names)} deployment(s): {', '.join(names)}", highlight=False)
        if web:
            _start_web(loaded, web_host, web_port)
            out.print(
                f"web app: http://{web_host}:{web_port}  "
                "(POST /webhooks/orders, POST /webhooks/sendgrid, /unsubscribe/…)"
            )
        out.print(f"emit an order: export PREFECT_API_URL={server.api_url}; "
                  "clvflow emit order-placed --customer ID --order ID")  # fmt: skip
        run_until_stopped(runner)
    finally:
        server.stop()
    return 0
