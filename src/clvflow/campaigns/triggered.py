"""A campaign for one shop event: the order-placed event starts the thank-you (and upsell)
email for that order, at most once per order.

The event carries what the email needs (customer address and name, the order's lines and
total), because the shop's data export may not have the order yet. The shop's data wins
where it knows the customer; the event fills the gaps. When neither knows the customer's
address, or the order, the run records that reason instead of sending.

The audience of a triggered run is the event's customer, not the segment (a catch-up
``clvflow run`` of the same campaign uses the segment). The ledger's unique key
(campaign, occurrence = order id, customer) makes a repeated event a no-op.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.run import new_summary, opened
from clvflow.data.sources import ShopData, in_list
from clvflow.delivery.base import Sender
from clvflow.personalization.orders import OrderView
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.claim import start
from clvflow.pipeline.job import Job
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace
from clvflow.project.layout import Project
from clvflow.segments.members import customer_rows

ORDER_PLACED = "shop.order.placed"
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderLine(Strict):
    product_id: str = Field(pattern=_ID)
    name: str | None = Field(default=None, max_length=500)
    quantity: int = Field(default=1, ge=1, le=100_000)
    unit_price: float = Field(ge=0)
    url: str | None = Field(default=None, max_length=2000)


class OrderCustomer(Strict):
    customer_id: str = Field(pattern=_ID)
    email: str | None = Field(default=None, max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    timezone: str | None = Field(default=None, max_length=64)
    accepts_marketing: bool | None = None


class ShopOrder(Strict):
    order_id: str = Field(pattern=_ID)
    placed_at: dt.datetime | None = Field(
        default=None, description="Shop-local time; an offset is converted to shop time."
    )
    total: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    items: list[OrderLine] = Field(default_factory=list, max_length=1000)


class OrderPlaced(Strict):
    """The order-created webhook's body, and the order-placed event's payload."""

    order: ShopOrder
    customer: OrderCustomer

    @property
    def resource_id(self) -> str:
        return f"shop.order.{self.order.order_id}"


def _order_from_data(data: ShopData, order_id: str) -> OrderView | None:
    currency = "currency" if "currency" in data.columns["orders"] else "NULL"
    rows = data.rows(
        f"{data.with_clause()}SELECT order_id, placed_at, total, {currency} FROM orders "
        f"WHERE order_id IN {in_list([order_id])}"
    )
    if not rows:
        return None
    oid, placed, total, cur = rows[0]
    view = OrderView(str(oid), placed, float(total), None if cur is None else str(cur))
    if data.has("order_items"):
        product = data.has("products")
        name = "p.name" if product else "i.product_id"
        url = "p.url" if product and "url" in data.columns["products"] else "NULL"
        join = "LEFT JOIN products AS p ON p.product_id = i.product_id" if product else ""
        for pid, pname, qty, price, purl in data.rows(
            f"{data.with_clause()}SELECT i.product_id, {name}, i.quantity, i.unit_price, {url} "
            f"FROM order_items AS i {join} WHERE i.order_id IN {in_list([order_id])} "
            "ORDER BY i.product_id"
        ):
            view.items.append(
                {"product_id": str(pid), "name": str(pname), "quantity": int(qty),
                 "unit_price": float(price), "url": purl}
            )  # fmt: skip
    return view


def _product_names(data: ShopData, ids: list[str]) -> dict[str, tuple[str, Any]]:
    if not ids or not data.has("products"):
        return {}
    url = "url" if "url" in data.columns["products"] else "NULL"
    rows = data.rows(
        f"{data.with_clause()}SELECT product_id, name, {url} FROM products "
        f"WHERE product_id IN {in_list(ids)}"
    )
    return {str(pid): (str(name), purl) for pid, name, purl in rows}


def order_view(
    data: ShopData, placed: OrderPlaced, shop_timezone: str, as_of: dt.datetime
) -> OrderView | None:
    """The order as templates see it: from the event when it carries lines or a total,
    else from the shop's data; ``None`` when neither has it."""
    order = placed.order
    if not order.items and order.total is None:
        return _order_from_data(data, order.order_id)
    when = order.placed_at or as_of
    if when.tzinfo is not None:
        from zoneinfo import ZoneInfo

        when = when.astimezone(ZoneInfo(shop_timezone)).replace(tzinfo=None)
    known = _product_names(data, [i.product_id for i in order.items if not i.name or not i.url])
    items = [
        {
            "product_id": i.product_id,
            "name": i.name or known.get(i.product_id, (i.product_id, None))[0],
            "quantity": i.quantity,
            "unit_price": i.unit_price,
            "url": i.url or known.get(i.product_id, ("", None))[1],
        }
        for i in order.items
    ]
    total = (
        order.total
        if order.total is not None
        else sum(i.quantity * i.unit_price for i in order.items)
    )
    return OrderView(order.order_id, when, float(total), order.currency, items)


def customer_row(data: ShopData, placed: OrderPlaced, as_of: dt.datetime) -> dict[str, Any] | None:
    """The customer from the shop's data, gaps filled from the event; ``None`` when
    neither has an address."""
    given = placed.customer
    found = customer_rows(data, [given.customer_id], as_of)
    row: dict[str, Any] = dict(found[0]) if found else {"customer_id": given.customer_id}
    for key, value in given.model_dump(exclude={"customer_id"}).items():
        current = row.get(key)
        missing = current is None or (not isinstance(current, str) and pd.isna(current))
        if value is not None and (missing or current == ""):
            row[key] = value
    email = row.get("email")
    if not isinstance(email, str) or not email.strip():
        return None
    return row


def run_for_order(
    ws: Workspace, job: Job, placed: OrderPlaced, sender: Sender | None, summary: RunSummary
) -> RunSummary:
    """Plan, claim and send the campaign's email for this one order, or record why not."""
    order_id = placed.order.order_id
    cid = placed.customer.customer_id
    summary.occurrence = order_id
    row = customer_row(ws.data, placed, job.as_of)
    order = order_view(ws.data, placed, ws.project.config.shop.timezone, job.as_of)
    reason = None
    if row is None:
        reason = "unknown_customer"  # not in the shop's data, and the event has no address
    elif order is None:
        reason = "unknown_order"  # not in the shop's data, and the event has no lines/total
    if row is None or order is None:
        summary.members = 1
        summary.skipped[str(reason)] += 1
        if not job.dry_run:
            start(ws.ledger, job, ws.project.config.limits.run_lease_seconds)
            at = job.clock(ws.project.config.shop.timezone)
            ws.ledger.record_skips(job.run_id, job.name, [(order_id, cid, str(reason))], at)
        return pipeline.finish(ws, job, summary)
    members = pd.DataFrame([{**row, "last_order_id": order_id}])
    return pipeline.run(ws, job, members, sender, summary, orders={cid: order})


def run_order_campaign(
    project: Project,
    campaign: Campaign,
    placed: OrderPlaced,
    *,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
) -> RunSummary:
    """:func:`run_for_order` without Prefect, with the configured sender."""
    with opened(project, campaign, as_of, dry_run, sender) as (ws, job, chosen):
        return run_for_order(ws, job, placed, chosen, new_summary(job, campaign.spec.segment))


def event_from_data(
    data: ShopData, customer_id: str, order_id: str, as_of: dt.datetime, **given: Any
) -> OrderPlaced:
    """The event for an order, filled from the shop's data where it knows the customer or
    the order (``given`` customer fields, e.g. ``email``, win)."""
    found = customer_rows(data, [customer_id], as_of)
    known = found[0] if found else {}
    fields = ("email", "first_name", "last_name", "locale", "timezone")
    customer: dict[str, Any] = {"customer_id": customer_id}
    for name in fields:
        value = given.get(name)
        if value is None:
            value = known.get(name)
        if isinstance(value, str) and value:
            customer[name] = value
    order: dict[str, Any] = {"order_id": order_id}
    view = _order_from_data(data, order_id)
    if view is not None:
        order.update(
            placed_at=view.placed_at,
            total=view.total,
            currency=view.currency,
            items=[
                {k: v for k, v in item.items() if v is not None and k != "url"}
                for item in view.items
            ],
        )
    if given.get("total") is not None:
        order["total"] = given["total"]
    return OrderPlaced.model_validate({"order": order, "customer": customer})
