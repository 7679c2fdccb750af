"""A journey entered on an order event: the entry made from the event, and the order as
the event tells it (the shop's data may not have it yet)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvflow.campaigns.triggered import OrderPlaced, order_view
from clvflow.journeys.catalog import Journey
from clvflow.personalization.orders import OrderView
from clvflow.pipeline.workspace import Workspace
from clvflow.planning.holdout import in_holdout
from clvflow.planning.plan import ledger_time


def order_entrant(
    ws: Workspace,
    journey: Journey,
    placed: OrderPlaced,
    as_of: dt.datetime,
    holdout_percent: float,
) -> pd.DataFrame:
    when = placed.order.placed_at or as_of
    if when.tzinfo is not None:
        entered = when.astimezone(dt.UTC).replace(tzinfo=None)
    else:
        entered = ledger_time(when, ws.data.timezone)
    cid = placed.customer.customer_id
    order_id = placed.order.order_id
    per_order = order_id if journey.spec.reentry == "per_order" else None
    held = int(in_holdout(journey.name, cid, holdout_percent, per_order))
    return pd.DataFrame(
        {
            "occurrence": [order_id],
            "customer_id": [cid],
            "entered_at": pd.Series([entered], dtype="datetime64[us]"),
            "holdout": [held],
        }
    )


def triggered_order(
    ws: Workspace, placed: OrderPlaced | None, as_of: dt.datetime
) -> dict[str, tuple[OrderPlaced, OrderView]]:
    """The triggering order by its id, as the event tells it (the shop's data may not
    have it yet)."""
    if placed is None:
        return {}
    view = order_view(ws.data, placed, ws.project.config.shop.timezone, as_of)
    return {} if view is None else {placed.order.order_id: (placed, view)}
