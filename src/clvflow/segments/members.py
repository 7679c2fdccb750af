"""A segment's members: their ids, or every attribute as one DataFrame (one query)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from clvflow.data.sources import ShopData, in_list
from clvflow.segments.attributes import DERIVED, sql_timestamp
from clvflow.segments.catalog import CompiledSegment, new_needs
from clvflow.segments.facts import Needs, facts_sql

if TYPE_CHECKING:
    import pandas as pd


def member_ids(data: ShopData, compiled: CompiledSegment) -> list[str]:
    """Member customer ids, sorted."""
    return [str(v) for v in data.first_column(compiled.members_sql())]


def member_frame(data: ShopData, compiled: CompiledSegment, as_of: dt.datetime) -> pd.DataFrame:
    """Members with all customer and derived attributes plus ``last_order_id``."""
    return _frame(data, compiled.needs, compiled.predicate, as_of)


def customer_rows(data: ShopData, ids: list[str], as_of: dt.datetime) -> list[dict[str, Any]]:
    """Given customers with every attribute (derived ones included), in the order of ``ids``."""
    needs = new_needs(data, as_of)
    frame = _frame(data, needs, f"cf.customer_id IN {in_list(ids)}", as_of)
    by_id = {str(r["customer_id"]): r for r in records(frame)}
    return [by_id[i] for i in ids if i in by_id]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name, with the values ``DataFrame.to_dict`` gives
    (Python scalars, ``Timestamp``, NaN; None where a nullable column has NA), built
    column by column: 2.7x faster than ``to_dict`` on 100,000 members."""
    import pandas as pd

    names = [str(name) for name in frame.columns]
    columns: list[list[Any]] = []
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        values = column.tolist()
        if isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
            na = pd.NA
            values = [None if v is na else v for v in values]
        columns.append(values)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def attribute_names(data: ShopData) -> list[str]:
    """Every attribute of a customer: the own columns, then the derived ones."""
    own = [c for c in data.columns["customers"] if c not in DERIVED]
    return [*own, *DERIVED]


def _frame(data: ShopData, needs: Needs, predicate: str, as_of: dt.datetime) -> pd.DataFrame:
    last_orders = (
        "last_orders AS (\n"
        "    SELECT customer_id, order_id AS last_order_id FROM (\n"
        "      SELECT customer_id, order_id, ROW_NUMBER() OVER (\n"
        "        PARTITION BY customer_id ORDER BY placed_at DESC, order_id DESC) AS rn\n"
        f"      FROM orders WHERE placed_at <= {sql_timestamp(as_of)}\n"
        "    ) AS ranked WHERE rn = 1\n"
        "  )"
    )
    # every attribute, but not the columns the predicate's orders: tests were computed in
    columns = ", ".join(f'cf."{c}"' for c in attribute_names(data))
    sql = (
        f"{data.with_clause(facts_sql(needs, full=True), last_orders)}"
        f"SELECT {columns}, lo.last_order_id\n"
        "FROM customer_facts AS cf LEFT JOIN last_orders AS lo ON lo.customer_id = cf.customer_id\n"
        f"WHERE {predicate}\n"
        "ORDER BY cf.customer_id"
    )
    return data.frame(sql)
