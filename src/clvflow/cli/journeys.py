"""``clvflow journeys list|show``: where each journey stands, from the ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clvflow.cli.options import ProjectOption
from clvflow.project.layout import Project

app = typer.Typer(help="Inspect journeys: per step waiting, sent, skipped, exited, converted.")
out = Console(soft_wrap=True)


@app.command("list")
def list_journeys(project: ProjectOption = Path(".")) -> None:
    """Every journey with its entry, steps and schedule."""
    from clvflow.campaigns.holdouts import resolved_holdout
    from clvflow.journeys.catalog import load_journeys

    loaded = Project.load(project)
    journeys = load_journeys(loaded.prefect_file)
    table = Table(title="Journeys")
    table.add_column("journey", min_width=max((len(n) for n in journeys), default=7))
    for heading in ("entry", "steps", "holdout", "schedule / trigger"):
        table.add_column(heading)
    for name, journey in sorted(journeys.items()):
        spec = journey.spec
        entry = f"segment {spec.entry.segment}" if spec.entry.segment else str(spec.entry.event)
        when = ", ".join(str(s.get("cron", s)) for s in journey.schedules)
        if journey.triggered:
            when = (when + " + " if when else "") + "event trigger"
        table.add_row(
            name,
            entry,
            " → ".join(s.name for s in spec.steps),
            f"{resolved_holdout(loaded, spec):g} %"
            + ("" if spec.holdout_percent is not None else " (shop default)"),
            when or "-",
        )
    out.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Journey: a deployment name in prefect.yaml.")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="One customer's path, with dates.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Per step: waiting, sent, skipped, exited, converted; or one customer's path."""
    from clvflow.data.sources import open_shop_data
    from clvflow.journeys.catalog import find_journey, load_journeys
    from clvflow.journeys.status import customer_path, journey_status
    from clvflow.journeys.views import step_rows
    from clvflow.ledger.store import open_ledger

    loaded = Project.load(project)
    journey = find_journey(load_journeys(loaded.prefect_file), name, loaded.prefect_file)
    ledger = open_ledger(loaded.ledger_url)
    try:
        if customer is not None:
            path = customer_path(ledger, journey, customer)
            if as_json:
                out.print_json(json.dumps(path, default=str))
            else:
                _print_path(name, customer, path)
            return
        data = open_shop_data(loaded)
        try:
            status = journey_status(ledger, journey, data, loaded.config.shop.default_locale)
        finally:
            data.close()
    finally:
        ledger.close()
    rows = step_rows(None, status)
    if as_json:
        out.print_json(json.dumps({"journey": name, "entries": status.entries,
                                   "holdout": status.holdout, "completed": status.completed,
                                   "steps": rows}))  # fmt: skip
        return
    table = Table(*rows[0].keys(), title=f"{name}: {status.entries} entries")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    table.caption = f"{status.holdout} held out, {status.completed} completed"
    out.print(table)


def _print_path(name: str, customer: str, path: dict[str, Any]) -> None:
    if not path["entries"]:
        out.print(f"{customer} never entered {name}.")
        return
    for entry in path["entries"]:
        ended = (
            f"exited {entry['exited_at']:%Y-%m-%d %H:%M} ({entry['exit_reason']})"
            if entry["exited_at"]
            else "still going"
        )
        out.print(
            f"[bold]{name}[/] entry {entry['occurrence']}: entered "
            f"{entry['entered_at']:%Y-%m-%d %H:%M} UTC, {ended}"
        )
        prefix = f"{entry['occurrence']}/"
        table = Table("step", "status", "reason", "template", "when (UTC)")
        for step in path["steps"]:
            if not str(step["occurrence"]).startswith(prefix):
                continue
            moment = step["finished_at"] or step["planned_at"]
            table.add_row(
                str(step["occurrence"])[len(prefix) :],
                str(step["status"]),
                str(step["reason"] or ""),
                str(step["template"] or ""),
                f"{moment:%Y-%m-%d %H:%M}",
            )
        out.print(table)
