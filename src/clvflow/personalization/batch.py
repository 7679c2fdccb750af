"""What a batch of messages needs from the shop's data, in one query per batch.

A message needs the customer's latest order (``orders``) and recommendations
(``recommendations``). On files (DuckDB) both are computed once per run into temporary
tables; here they are joined once more into one, so a batch costs one query instead of
two. When the run says in which order it will ask (``expect``), rows are read ahead,
``READ_AHEAD`` customers a query. Elsewhere (a database) each is looked up on its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from clvflow.data.sources import ShopData
from clvflow.personalization.orders import OrderLookup, OrderView
from clvflow.personalization.recommendations import Recommender

READ_AHEAD = 5000
Row = tuple[Any, ...]  # customer_id, order_id, placed_at, total, currency, items, buyer, …


class Personalization:
    def __init__(self, data: ShopData, as_of: dt.datetime) -> None:
        self.data = data
        self.as_of = as_of
        self.orders = OrderLookup(data, as_of)
        self._recommender: Recommender | None = None
        self._table: str | None = None
        self._ahead: list[str] = []  # the order batches will ask in (``expect``)
        self._position: dict[str, int] = {}
        self._read: dict[str, Row | None] = {}  # read ahead, not asked for yet (None: no row)
        self._read_items = False  # whether the rows read ahead hold the order lines

    @property
    def recommender(self) -> Recommender:
        if self._recommender is None:
            self._recommender = Recommender(self.data, self.as_of)
        return self._recommender

    def _joined(self) -> str | None:
        """The temporary table of both (DuckDB, recommendations enabled), else None."""
        if self._table is not None:
            return self._table
        con = self.data.con
        if con is None or not self.recommender.enabled:
            return None
        orders, recommendations = self.orders.table(), self.recommender.table()
        table = f"clvflow_personal_{uuid.uuid4().hex[:12]}"
        con.execute(
            f"""CREATE TEMP TABLE {table} AS
                SELECT COALESCE(o.customer_id, r.customer_id) AS customer_id,
                       o.order_id, o.placed_at, o.total, o.currency, o.items,
                       r.customer_id IS NOT NULL AS buyer, r.scored, r.filled
                FROM {orders} AS o FULL JOIN {recommendations} AS r
                  ON r.customer_id = o.customer_id"""
        )
        self._table = table
        return table

    def prepare(self) -> None:
        """Build the per-run tables now rather than on the first batch."""
        self.orders.prepare()
        self.recommender.prepare()
        self._joined()

    def for_customers(
        self, customer_ids: Sequence[str], items: bool = True
    ) -> tuple[dict[str, OrderView], dict[str, list[dict[str, Any]]]]:
        """(customer → latest order, customer → recommendations) for a batch; without
        ``items`` the orders come without their lines (for templates that read none)."""
        table = self._joined()
        if table is None or not customer_ids:
            return (
                self.orders.for_customers(customer_ids),
                self.recommender.for_customers(customer_ids),
            )
        rows = self._rows(table, customer_ids, items)
        orders: dict[str, OrderView] = {}
        chosen: dict[str, list[dict[str, Any]]] = {}
        pick = self.recommender.pick
        for cid, oid, placed, total, currency, found, buyer, scored, filled in rows:
            if oid is not None:
                orders[cid] = OrderView(oid, placed, total, currency, found or [])
            if buyer:
                chosen[cid] = pick(scored, filled)
        fallback = self.recommender.fallback
        return orders, {c: chosen[c] if c in chosen else fallback() for c in customer_ids}

    def expect(self, customer_ids: Sequence[str]) -> None:
        """The customers batches will ask for, in order: their rows are read ahead."""
        self._ahead = list(customer_ids)
        self._position = {c: i for i, c in enumerate(self._ahead)}
        self._read = {}

    def _rows(self, table: str, customer_ids: Sequence[str], items: bool) -> list[Row]:
        if not self._position or any(c not in self._position for c in customer_ids):
            return self._query(table, customer_ids, items)
        if items and not self._read_items:
            self._read = {}  # read without order lines: of no use to this template
        missing = [c for c in customer_ids if c not in self._read]
        if missing:
            start = min(self._position[c] for c in missing)
            chunk = [c for c in self._ahead[start : start + READ_AHEAD] if c not in self._read]
            chunk += set(missing) - set(chunk)  # asked for, further on than the read-ahead
            if not self._read:
                self._read_items = items
            found = {row[0]: row for row in self._query(table, chunk, self._read_items)}
            self._read.update({c: found.get(c) for c in chunk})
        rows = [row for c in customer_ids if (row := self._read.pop(c, None)) is not None]
        if self._read_items and not items:  # the same rows, without their order lines
            rows = [(*row[:5], None, *row[6:]) for row in rows]
        return rows

    def _query(self, table: str, customer_ids: Sequence[str], items: bool) -> list[Row]:
        con = self.data.con
        assert con is not None
        lines = "items" if items else "NULL"
        return con.execute(
            f"SELECT customer_id, order_id, placed_at, total, currency, {lines}, buyer, scored, "
            f"filled FROM {table} WHERE customer_id IN (SELECT unnest($1::VARCHAR[]))",
            [list(customer_ids)],
        ).fetchall()
