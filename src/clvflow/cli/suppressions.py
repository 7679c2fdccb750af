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
    from clvflow.delivery.suppressions import sync_project_suppressions
    from clvflow.orchestration.secrets import sendgrid_key

    loaded = Project.load(project)
    added = sync_project_suppressions(loaded, sendgrid_key(loaded))
    total = sum(added.values())
    detail = ", ".join(f"{n} {reason}" for reason, n in sorted(added.items())) or "nothing new"
    typer.echo(f"{total} new suppression(s): {detail}")
