"""``clvflow demo``: generate the demo shop once, with its simulated past, then run every
campaign and journey as flow runs.

The shop's data is generated relative to a reference day (the first run's today) and kept
in ``data/`` with a manifest. The shop has a past: the weeks before that day, in which
its campaigns and journeys ran with their holdouts and the customers answered at known
true effects (:mod:`clvflow.demo.history`). Its extra orders are in the data, its runs
and messages in the ledger, its true effects in the manifest, so ``clvflow report`` can
be held against them. The past ends two days before the reference day's runs; then every
campaign and journey runs as of that day at 10:00 shop time, and sends what came due since:
first steps for the new orders and the newly lapsed, and later steps (reminders, last
chances, cross-sells, review requests) for entries the past left midway. Every run's
instant is fixed, so a second ``clvflow demo`` sees the same customers and sends nothing
new.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from clvflow.campaigns.catalog import load_campaigns
from clvflow.demo.effects import HISTORY_WEEKS
from clvflow.demo.frames import append_orders, read_frames
from clvflow.demo.history import History, simulate_history
from clvflow.demo.past_rows import Period
from clvflow.demo.record import past_start, record_history, recorded_past
from clvflow.demo.shop import ShopFiles, ShopSize, generate_shop
from clvflow.errors import ConfigError
from clvflow.journeys.catalog import load_journeys
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project

MANIFEST = "demo-shop.json"
SEED = 7
RUN_HOUR = 10
PAST_ENDS = dt.timedelta(days=2)  # the simulated past ends this long before the real runs
CUSTOMERS = 20_000  # the demo shop's size; four orders per customer
ORDERS_PER_CUSTOMER = 4


def shop_size(customers: int) -> ShopSize:
    return ShopSize(customers=customers, orders=ORDERS_PER_CUSTOMER * customers)


def run_instant(reference: dt.date) -> dt.datetime:
    """When the demo's real runs run: the reference day at 10:00 shop time."""
    return dt.datetime.combine(reference, dt.time(RUN_HOUR))


def past_period(reference: dt.date) -> Period:
    return Period.before(run_instant(reference) - PAST_ENDS, reference)


def simulate_past(project: Project, folder: Path, reference: dt.date, seed: int) -> History:
    """The simulated past of the shop generated into ``folder`` (before its extra orders)."""
    frames = read_frames(folder, project.config.shop.currency)
    return simulate_history(project, frames, past_period(reference), seed)


def _manifest(reference: dt.date, files: ShopFiles, history: History) -> dict[str, object]:
    period = past_period(reference)
    return {
        "reference": reference.isoformat(),
        "seed": SEED,
        "customers": files.n_customers,
        "orders": files.n_orders + len(history.orders),
        "order_items": files.n_items + len(history.items),
        "products": files.n_products,
        "history": {
            "from": period.start.isoformat(),
            "until": period.until.isoformat(),
            "response_orders": len(history.orders),
            "true_effects": history.effects,
        },
    }


def ensure_demo_data(
    project: Project,
    *,
    fresh: bool,
    customers: int = CUSTOMERS,
    reference: dt.date | None = None,
) -> tuple[dt.date, bool]:
    """Generate the demo shop (``customers`` customers, as of ``reference``, default
    today) and its simulated past into the folder of ``data.customers`` unless already
    there; the past goes into the ledger unless it is there (generated again the same way
    when only the ledger lacks it). Returns the reference day and whether the shop has a
    simulated past (data generated before it had none)."""
    folder = project.resolve(project.config.data.customers).parent
    manifest = folder / MANIFEST
    if manifest.is_file() and not fresh:
        known = json.loads(manifest.read_text())
        day = dt.date.fromisoformat(known["reference"])
        if "history" not in known:
            return day, False
        size, seed = int(known["customers"]), int(known["seed"])
        _record(project, lambda: _regenerate(project, day, seed, size))
        return day, True
    today = reference or dt.datetime.now(ZoneInfo(project.config.shop.timezone)).date()
    ledger = Ledger(project.ledger_url)
    try:
        started = past_start(ledger)
        if started is not None and started != past_period(today).start:
            raise ConfigError(
                "the ledger already holds the past of another demo shop",
                path=project.root / "clvflow.yaml",
                key="ledger",
                hint="a new shop needs an empty ledger: `make clean` (or delete .clvflow/) first",
            )
    finally:
        ledger.close()
    generate_demo_data(project, reference=today, customers=customers)
    return today, True


def generate_demo_data(project: Project, *, reference: dt.date, customers: int) -> History:
    """Write the demo shop as of ``reference`` with its simulated past into the folder of
    ``data.customers`` (its manifest too) and the past into the ledger."""
    folder = project.resolve(project.config.data.customers).parent
    files = generate_shop(folder, reference=reference, seed=SEED, size=shop_size(customers))
    history = simulate_past(project, folder, reference, SEED)
    append_orders(folder, history.orders, history.items)
    (folder / MANIFEST).write_text(json.dumps(_manifest(reference, files, history), indent=2))
    _record(project, lambda: history)
    return history


def _regenerate(project: Project, reference: dt.date, seed: int, customers: int) -> History:
    with tempfile.TemporaryDirectory(prefix="clvflow-demo-") as scratch:
        generate_shop(Path(scratch), reference=reference, seed=seed, size=shop_size(customers))
        return simulate_past(project, Path(scratch), reference, seed)


def _record(project: Project, history: Callable[[], History]) -> None:
    ledger = Ledger(project.ledger_url)
    try:
        if not recorded_past(ledger):
            record_history(ledger, history(), project.config.shop.timezone)
    finally:
        ledger.close()


def run_demo(
    project: Project,
    *,
    fresh: bool,
    console: Console,
    table: Callable[[dict[str, Any]], Table],
    journey_table: Callable[[dict[str, Any]], Table],
    customers: int = CUSTOMERS,
) -> int:
    from clvflow.orchestration.local import (
        flow_session,
        quiet_prefect,
        run_flow,
        run_journey_flow,
    )

    reference, has_past = ensure_demo_data(project, fresh=fresh, customers=customers)
    as_of = run_instant(reference)
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
        for journey in journeys.values():
            result = run_journey_flow(journey, str(project.root), as_of, dry_run=False)
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
    if has_past:
        console.print(
            f"The shop's past {HISTORY_WEEKS} weeks (campaigns and journeys with holdouts, "
            f"customers answering at the true effects in {data_dir / MANIFEST}) are in the "
            "ledger: `clvflow report` measures them."
        )
    return 1 if failed else 0
