"""A segment's members: their ids, or every attribute as one DataFrame (one query)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from clvflow.data.sources import ShopData, in_list
from clvflow.segments.attributes import customer_facts_sql, sql_timestamp
from clvflow.segments.catalog import CompiledSegment


def member_ids(data: ShopData, compiled: CompiledSegment) -> list[str]:
    """Member customer ids, sorted."""
    return [str(r[0]) for r in data.rows(compiled.members_sql())]


def member_frame(data: ShopData, compiled: CompiledSegment, as_of: dt.datetime) -> pd.DataFrame:
    """Members with all customer and derived attributes plus ``last_order_id``."""
    return _frame(data, compiled.facts, compiled.predicate, as_of)


def customer_rows(data: ShopData, ids: list[str], as_of: dt.datetime) -> list[dict[str, Any]]:
    """Given customers with every attribute (derived ones included), in the order of ``ids``."""
    facts = customer_facts_sql(data.columns["customers"], as_of)
    frame = _frame(data, facts, f"cf.customer_id IN {in_list(ids)}", as_of)
    by_id = {str(r["customer_id"]): r for r in records(frame)}
    return [by_id[i] for i in ids if i in by_id]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _frame(data: ShopData, facts: str, predicate: str, as_of: dt.datetime) -> pd.DataFrame:
    last_orders = (
        "last_orders AS (\n"
        "    SELECT customer_id, order_id AS last_order_id FROM (\n"
        "      SELECT customer_id, order_id, ROW_NUMBER() OVER (\n"
        "        PARTITION BY customer_id ORDER BY placed_at DESC, order_id DESC) AS rn\n"
        f"      FROM orders WHERE placed_at <= {sql_timestamp(as_of)}\n"
        "    ) AS ranked WHERE rn = 1\n"
        "  )"
    )
    sql = (
        f"{data.with_clause(facts, last_orders)}"
        "SELECT cf.*, lo.last_order_id\n"
        "FROM customer_facts AS cf LEFT JOIN last_orders AS lo ON lo.customer_id = cf.customer_id\n"
        f"WHERE {predicate}\n"
        "ORDER BY cf.customer_id"
    )
    return data.frame(sql)
