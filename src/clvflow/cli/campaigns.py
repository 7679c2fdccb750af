"""``clvflow run`` and ``clvflow demo``: campaigns as Prefect flow runs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.errors import ConfigError
from clvflow.project.layout import Project

out = Console(soft_wrap=True)


def summary_table(summary: dict[str, Any]) -> Table:
    verb = "would send" if summary["dry_run"] else "sent"
    table = Table("", "count", title=f"{summary['campaign']} — segment {summary['segment']}")
    table.add_row("segment members", str(summary["members"]))
    for reason, count in sorted(summary["skipped"].items()):
        table.add_row(f"skipped: {reason.replace('_', ' ')}", str(count))
    if summary["holdout"]:
        table.add_row("holdout", str(summary["holdout"]))
    if summary.get("waiting"):
        table.add_row("waiting for the send window", str(summary["waiting"]))
    if summary["unknown"]:
        table.add_row("unknown (earlier run stopped mid-send)", str(summary["unknown"]))
    table.add_row(f"[bold]{verb}[/]", f"[bold]{summary['sent']}[/]")
    table.add_row("failed", str(summary["failed"]))
    for variant, count in sorted(summary.get("by_variant", {}).items()):
        table.add_row(f"  variant {variant}: {verb}", str(count))
    return table


def journey_table(summary: dict[str, Any]) -> Table:
    verb = "would send" if summary["dry_run"] else "sent"
    table = Table("step", "due", verb, "skipped", "exited", "waiting", title=summary["journey"])
    for name, step in summary["steps"].items():
        table.add_row(
            name,
            str(step["due"]),
            str(step["sent"]),
            ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in sorted(step["skipped"].items())),
            ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in sorted(step["exited"].items())),
            str(step["waiting"]),
        )
    table.caption = (
        f"{summary['entered']} entered ({summary['held_out']} in the holdout); "
        f"{verb} {summary['sent']}, failed {summary['failed']}"
    )
    return table


def run(
    campaign: Annotated[
        str, typer.Argument(help="Campaign or journey: a deployment name in prefect.yaml.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and render, send and record nothing.")
    ] = False,
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
) -> int:
    """Run CAMPAIGN (or advance a journey) now, as a Prefect flow run."""
    from clvflow.campaigns.catalog import load_campaigns
    from clvflow.journeys.catalog import load_journeys
    from clvflow.orchestration.local import flow_session, quiet_prefect, run_flow, run_journey_flow

    loaded = Project.load(project)
    journeys = load_journeys(loaded.prefect_file)
    when = resolve_as_of(loaded, as_of) if as_of else None
    if campaign in journeys:
        quiet_prefect()
        with flow_session():
            result = run_journey_flow(journeys[campaign], str(loaded.root), when, dry_run)
        out.print(journey_table(result))
        return 1 if result["failed"] else 0
    campaigns = load_campaigns(loaded.prefect_file)
    if campaign not in campaigns:
        names = sorted([*campaigns, *journeys])
        close = difflib.get_close_matches(campaign, names, n=1)
        raise ConfigError(
            f"no campaign or journey named '{campaign}'"
            + (f" — did you mean '{close[0]}'?" if close else ""),
            path=loaded.prefect_file,
            hint="campaigns and journeys: " + (", ".join(names) or "(none)"),
        )
    target = campaigns[campaign]
    quiet_prefect()
    with flow_session():
        summary = run_flow(target, str(loaded.root), when, dry_run)
    out.print(summary_table(summary))
    return 1 if summary["failed"] else 0


def demo(
    project: ProjectOption = Path("."),
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Regenerate the demo shop's data as of today.")
    ] = False,
    customers: Annotated[
        int,
        typer.Option(
            "--customers", min=500, help="Customers of a newly generated shop (4 orders each)."
        ),
    ] = 20_000,
) -> int:
    """Generate the demo shop and its past (once), then run every campaign and journey in
    prefect.yaml as a flow run."""
    from clvflow.demo.run import run_demo

    return run_demo(
        Project.load(project),
        fresh=fresh,
        console=out,
        table=summary_table,
        journey_table=journey_table,
        customers=customers,
    )


def web(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    project: ProjectOption = Path("."),
) -> int:
    """Serve the unsubscribe pages and the SendGrid webhook (put it behind HTTPS)."""
    import uvicorn

    from clvflow.web.app import create_app

    app = create_app(Project.load(project))
    out.print(f"clvflow web on http://{host}:{port} (unsubscribe links, /webhooks/sendgrid)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
