"""``clvflow serve``: a Prefect server (started or found), every deployment of prefect.yaml
served from this process so schedules and triggers fire, and the web app beside it (its
console's URL printed beside the Prefect UI's)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clvflow.cli.options import ProjectOption
from clvflow.project.config import WEB_URL_ENV
from clvflow.project.layout import Project
from clvflow.web.console.access import PASSWORD_ENV
from clvflow.web.console.prefect_runs import UI_ENV

out = Console(soft_wrap=True)


def _start_web(project: Project, host: str, port: int) -> threading.Thread:
    import uvicorn

    from clvflow.web.app import create_app

    config = uvicorn.Config(create_app(project), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="clvflow-web", daemon=True)
    thread.start()
    return thread


def local_url(host: str, port: int) -> str:
    """The URL of a server listening on ``host``: all interfaces are reached on loopback."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def addresses(ui_url: str, web_url: str | None, console_on: bool) -> list[str]:
    """The lines that say where to look: the Prefect UI, the console, the web app."""
    lines = [f"Prefect UI: {ui_url}"]
    if web_url is None:
        return lines
    console = f"console:    {web_url}/console/"
    if not console_on:
        console += f"  (off: set {PASSWORD_ENV} to turn it on)"
    lines.append(console)
    lines.append(
        f"web app:    {web_url}  (POST /webhooks/orders, POST /webhooks/sendgrid, /unsubscribe/…)"
    )
    return lines


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
        bool,
        typer.Option(
            "--web/--no-web", help="Start the web app (webhooks, unsubscribe, the console)."
        ),
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
        web_url = local_url(web_host, web_port) if web else None
        # the console links each run to the Prefect UI; the runs served here link their
        # samples to this web app's console unless clvflow.yaml names a public URL
        os.environ.setdefault(UI_ENV, server.ui_url)
        if web_url and not loaded.config.web.base_url:
            os.environ.setdefault(WEB_URL_ENV, web_url)
        # the deployments and their triggers first: the web app turns orders into events,
        # and an event that comes before its trigger exists starts nothing
        runner, names = register_deployments(loaded, only, limit)
        if web:
            _start_web(loaded, web_host, web_port)
        how = "started here" if server.started_here else "already running"
        lines = addresses(server.ui_url, web_url, bool(os.environ.get(PASSWORD_ENV)))
        lines[0] += f"  (API {server.api_url}, {how})"
        for line in lines:
            out.print(line, highlight=False)
        out.print(f"serving {len(names)} deployment(s): {', '.join(names)}", highlight=False)
        out.print(f"emit an order: export PREFECT_API_URL={server.api_url}; "
                  "clvflow emit order-placed --customer ID --order ID")  # fmt: skip
        run_until_stopped(runner)
    finally:
        server.stop()
    return 0
