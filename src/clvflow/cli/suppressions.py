"""``clvflow suppressions sync``: SendGrid's suppression lists into the ledger."""

from __future__ import annotations

from pathlib import Path

import typer

from clvflow.cli.options import ProjectOption
from clvflow.project.layout import Project

app = typer.Typer(help="Addresses that must not get marketing email.")


@app.command("sync")
def sync(project: ProjectOption = Path(".")) -> None:
    """Copy SendGrid's unsubscribes, bounces and spam reports into the ledger."""
    from clvflow.delivery.senders import sendgrid_api_key
    from clvflow.delivery.suppressions import sync_suppressions
    from clvflow.ledger.store import Ledger

    loaded = Project.load(project)
    sg = loaded.config.delivery.sendgrid
    ledger = Ledger(loaded.ledger_url)
    try:
        added = sync_suppressions(
            ledger, sg.api_host, sendgrid_api_key(sg.secret_block), timeout=sg.timeout_seconds
        )
    finally:
        ledger.close()
    total = sum(added.values())
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(added.items())) or "nothing new"
    typer.echo(f"{total} new suppression(s): {detail}")
