"""``clvflow emit order-placed``: the shop's order event from the shell, as the webhook
would emit it (the thank-you deployment's trigger starts a flow run for the order)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clvflow.cli.options import ProjectOption
from clvflow.errors import ConfigError
from clvflow.project.layout import Project

app = typer.Typer(help="Emit shop events to Prefect (what the shop's webhooks do).")
out = Console(soft_wrap=True)


@app.command("order-placed")
def order_placed(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    order: Annotated[str, typer.Option("--order", help="Order id.")],
    email: Annotated[
        str | None, typer.Option("--email", help="Address, when the shop's data lacks it.")
    ] = None,
    first_name: Annotated[str | None, typer.Option("--first-name", help="First name.")] = None,
    total: Annotated[float | None, typer.Option("--total", help="Order total.")] = None,
    show: Annotated[
        bool, typer.Option("--print", help="Print the event's payload, emit nothing.")
    ] = False,
    project: ProjectOption = Path("."),
) -> int:
    """Emit shop.order.placed for ORDER of CUSTOMER, filled from the shop's data."""
    from clvflow.campaigns.triggered import event_from_data
    from clvflow.data.sources import open_shop_data
    from clvflow.project.clock import local_now

    loaded = Project.load(project)
    data = open_shop_data(loaded)
    try:
        placed = event_from_data(
            data,
            customer,
            order,
            local_now(loaded.config.shop.timezone),
            email=email,
            first_name=first_name,
            total=total,
        )
    finally:
        data.close()
    if show:
        out.print_json(json.dumps(placed.model_dump(mode="json")))
        return 0
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "PREFECT_API_URL is not set: the event would go to a temporary server",
            hint="point it at the Prefect server `clvflow serve` prints "
            "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api)",
        )
    from clvflow.orchestration.events import order_placed as emit

    event_id = emit(placed)
    out.print(f"emitted shop.order.placed for order {order} (event {event_id})")
    return 0
