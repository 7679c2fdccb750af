"""The latest order (with its items) of each customer in a batch, as of the run.

``latest_orders`` asks the data engine once per batch. ``OrderLookup`` is the same for a
whole run on files (DuckDB): the latest order of every customer and its lines are computed
once into a temporary table of the in-process engine, and a batch reads its rows from it
(one query with the batch's ids as a parameter, instead of scanning all orders per batch).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clvflow.data.sources import ShopData, in_list
from clvflow.segments.attributes import sql_timestamp


@dataclass
class OrderView:
    """An order as templates see it: ``order.items`` is the list of lines (a plain dict's
    ``.items`` would be its method)."""

    order_id: str
    placed_at: dt.datetime
    total: float
    currency: str | None
    items: list[dict[str, Any]] = field(default_factory=list)


def latest_orders(
    data: ShopData, customer_ids: Sequence[str], as_of: dt.datetime
) -> dict[str, OrderView]:
    """customer_id → the latest order at or before ``as_of``, with its items (two queries)."""
    if not customer_ids:
        return {}
    currency = "o.currency" if "currency" in data.columns["orders"] else "NULL"
    rows = data.rows(
        f"""{data.with_clause()}SELECT customer_id, order_id, placed_at, total, currency FROM (
              SELECT o.customer_id, o.order_id, o.placed_at, o.total, {currency} AS currency,
                     ROW_NUMBER() OVER (
                       PARTITION BY o.customer_id ORDER BY o.placed_at DESC, o.order_id DESC
                     ) AS rn
              FROM orders AS o
              WHERE o.customer_id IN {in_list(customer_ids)}
                AND o.placed_at <= {sql_timestamp(as_of)}
            ) AS ranked WHERE rn = 1"""
    )
    out = {
        str(cid): OrderView(str(oid), placed, float(total), None if cur is None else str(cur))
        for cid, oid, placed, total, cur in rows
    }
    if out and data.has("order_items"):
        by_order = {o.order_id: o for o in out.values()}
        product = data.has("products")
        name = "p.name" if product else "i.product_id"
        url = "p.url" if product and "url" in data.columns["products"] else "NULL"
        join = "LEFT JOIN products AS p ON p.product_id = i.product_id" if product else ""
        items = data.rows(
            f"""{data.with_clause()}SELECT i.order_id, i.product_id, {name}, i.quantity,
                       i.unit_price, {url}
                FROM order_items AS i {join}
                WHERE i.order_id IN {in_list(list(by_order))}
                ORDER BY i.order_id, i.product_id"""
        )
        for oid, pid, pname, qty, price, purl in items:
            by_order[str(oid)].items.append(
                {
                    "product_id": str(pid),
                    "name": str(pname),
                    "quantity": int(qty),
                    "unit_price": float(price),
                    "url": purl,
                }
            )
    return out


class OrderLookup:
    """The latest orders of a run's customers, batch by batch (see the module docstring)."""

    def __init__(self, data: ShopData, as_of: dt.datetime) -> None:
        self.data = data
        self.as_of = as_of
        self._table: str | None = None

    def _prepare(self) -> str:
        """The latest order of every customer as of the run, one row each, its lines as a
        list of structs (DuckDB turns them into the item dicts templates read)."""
        data = self.data
        assert data.con is not None
        table = f"clvflow_latest_{uuid.uuid4().hex[:12]}"
        currency = "o.currency" if "currency" in data.columns["orders"] else "NULL"
        items, lines = "", "NULL"
        if data.has("order_items"):
            product = data.has("products")
            name = "p.name" if product else "i.product_id"
            url = "p.url" if product and "url" in data.columns["products"] else "NULL"
            lines = f"""list(struct_pack(
                  product_id := CAST(i.product_id AS VARCHAR),
                  name := COALESCE(CAST({name} AS VARCHAR), 'None'),
                  quantity := CAST(TRUNC(i.quantity) AS BIGINT),
                  unit_price := CAST(i.unit_price AS DOUBLE),
                  url := {url}) ORDER BY i.product_id) FILTER (WHERE i.product_id IS NOT NULL)"""
            items = "LEFT JOIN order_items AS i ON i.order_id = l.order_id"
            if product:
                items += " LEFT JOIN products AS p ON p.product_id = i.product_id"
        data.con.execute(
            f"""CREATE TEMP TABLE {table} AS
            WITH l AS (
              SELECT o.customer_id, o.order_id, o.placed_at, o.total, {currency} AS currency
              FROM orders AS o WHERE o.placed_at <= {sql_timestamp(self.as_of)}
              QUALIFY ROW_NUMBER() OVER (
                PARTITION BY o.customer_id ORDER BY o.placed_at DESC, o.order_id DESC) = 1
            )
            SELECT CAST(l.customer_id AS VARCHAR) AS customer_id,
                   CAST(l.order_id AS VARCHAR) AS order_id, l.placed_at,
                   CAST(l.total AS DOUBLE) AS total, CAST(l.currency AS VARCHAR) AS currency,
                   {lines} AS items
            FROM l {items}
            GROUP BY l.customer_id, l.order_id, l.placed_at, l.total, l.currency"""
        )
        return table

    def prepare(self) -> None:
        """Compute the latest orders now (on files) rather than on the first batch."""
        if self.data.con is not None and self._table is None:
            self._table = self._prepare()

    def table(self) -> str:
        """The temporary table of ``_prepare`` (on files)."""
        if self._table is None:
            self._table = self._prepare()
        return self._table

    def for_customers(self, customer_ids: Sequence[str]) -> dict[str, OrderView]:
        if self.data.con is None:
            return latest_orders(self.data, customer_ids, self.as_of)
        if not customer_ids:
            return {}
        if self._table is None:
            self._table = self._prepare()
        rows = self.data.con.execute(
            f"SELECT * FROM {self._table} WHERE customer_id IN (SELECT unnest($1::VARCHAR[]))",
            [list(customer_ids)],
        ).fetchall()
        return {
            cid: OrderView(oid, placed, total, currency, items or [])
            for cid, oid, placed, total, currency, items in rows
        }
