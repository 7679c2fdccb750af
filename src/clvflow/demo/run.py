"""``clvflow demo``: generate the demo shop once, then run every campaign and journey as
flow runs.

The shop's data is generated relative to a reference day (the first run's today) and kept
in ``data/`` with a manifest; the campaigns run as of that day at 10:00 shop time. The
journeys run as of three weeks before it, one week before it and on it, so the demo
shows their later steps (reminders, last chances, cross-sells, review requests) and the
entries that left on an order. Every run's instant is fixed, so a second ``clvflow demo``
sees the same customers and sends nothing new.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from clvflow.campaigns.catalog import load_campaigns
from clvflow.demo.shop import generate_shop
from clvflow.journeys.catalog import load_journeys
from clvflow.project.layout import Project

MANIFEST = "demo-shop.json"
SEED = 7
RUN_HOUR = 10
JOURNEY_WEEKS = (3, 1, 0)  # the journeys run as of these weeks before the reference day


def ensure_demo_data(project: Project, *, fresh: bool) -> dt.date:
    """Generate the demo shop into the folder of ``data.customers`` unless already there."""
    folder = project.resolve(project.config.data.customers).parent
    manifest = folder / MANIFEST
    if manifest.is_file() and not fresh:
        return dt.date.fromisoformat(json.loads(manifest.read_text())["reference"])
    today = dt.datetime.now(ZoneInfo(project.config.shop.timezone)).date()
    files = generate_shop(folder, reference=today, seed=SEED)
    manifest.write_text(
        json.dumps(
            {
                "reference": today.isoformat(),
                "seed": SEED,
                "customers": files.n_customers,
                "orders": files.n_orders,
                "order_items": files.n_items,
                "products": files.n_products,
            },
            indent=2,
        )
    )
    return today


def run_demo(
    project: Project,
    *,
    fresh: bool,
    console: Console,
    table: Callable[[dict[str, Any]], Table],
    journey_table: Callable[[dict[str, Any]], Table],
) -> int:
    from clvflow.orchestration.local import (
        flow_session,
        quiet_prefect,
        run_flow,
        run_journey_flow,
    )

    reference = ensure_demo_data(project, fresh=fresh)
    as_of = dt.datetime.combine(reference, dt.time(RUN_HOUR))
    data_dir = Path(project.config.data.customers).parent
    console.print(f"Demo shop in {data_dir}/ (reference day {reference}); runs as of {as_of}.")
    campaigns = load_campaigns(project.prefect_file)
    journeys = load_journeys(project.prefect_file)
    quiet_prefect()
    total_sent = 0
    failed = 0
    with flow_session():
        for campaign in campaigns.values():
            summary = run_flow(campaign, str(project.root), as_of, dry_run=False)
            console.print(table(summary))
            total_sent += int(summary["sent"])
            failed += int(summary["failed"])
        for weeks in JOURNEY_WEEKS:
            when = as_of - dt.timedelta(weeks=weeks)
            for journey in journeys.values():
                result = run_journey_flow(journey, str(project.root), when, dry_run=False)
                console.print(journey_table(result))
                total_sent += int(result["sent"])
                failed += int(result["failed"])
    outbox = project.outbox_dir / "index.html"
    if total_sent:
        console.print(f"[bold green]{total_sent} emails written.[/] Open {outbox}")
    else:
        console.print(
            "[bold]0 sent:[/] every planned message was already sent in an earlier run "
            f"(the ledger remembers). Open {outbox} to read them."
        )
    console.print("Runs are in Prefect: `prefect server start`, then http://127.0.0.1:4200")
    return 1 if failed else 0
