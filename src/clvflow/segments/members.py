"""A segment's members: their ids, or every attribute as one DataFrame (one query)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clvflow.data.sources import ShopData, in_list
from clvflow.segments.attributes import DERIVED, sql_timestamp
from clvflow.segments.catalog import CompiledSegment, new_needs
from clvflow.segments.facts import Needs, facts_sql

if TYPE_CHECKING:
    import numpy as np
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
    """Every row of ``frame`` as a dict keyed by column name (see :class:`MemberRows`)."""
    return MemberRows(frame).rows()


class MemberRows:
    """A member frame's rows as dicts, any of them at a time, with plain Python values: the
    ones ``DataFrame.to_dict`` gives (Python scalars, NaN in float columns), except
    ``datetime.datetime`` for a naive timestamp column (a tz-aware one keeps ``Timestamp``),
    None for a missing timestamp (what a template sees anyway) and None where a nullable
    column has NA.

    Each column becomes a numpy array once; a batch's rows are then a ``take`` and a
    ``tolist`` per column."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.names = [str(name) for name in frame.columns]
        self._columns = [_plain_column(frame.iloc[:, i]) for i in range(frame.shape[1])]

    def __len__(self) -> int:
        return len(self._columns[0]) if self._columns else 0

    def rows(self, positions: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The rows at ``positions`` (all rows when None), in that order."""
        import numpy as np

        if positions is None:
            columns = [column.tolist() for column in self._columns]
        else:
            where = np.asarray(positions, dtype=np.intp)
            columns = [column.take(where).tolist() for column in self._columns]
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _plain_column(column: pd.Series) -> np.ndarray:
    """The column as a numpy array whose ``tolist`` gives the values :class:`MemberRows`
    promises."""
    import numpy as np
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "M":  # naive: tz-aware ones are pandas'
        values: np.ndarray = column.to_numpy().astype("datetime64[us]").astype(object)
        return values
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return column.to_numpy()
    na, nat = pd.NA, pd.NaT
    items = column.tolist()
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        items = [None if v is na or v is nat else v for v in items]
    return np.fromiter(items, dtype=object, count=len(items))


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


def customers_frame(data: ShopData, ids: Sequence[str], as_of: dt.datetime) -> pd.DataFrame:
    """The customers ``ids`` with every attribute plus ``last_order_id``, by customer id."""
    needs = new_needs(data, as_of)
    return _frame(data, needs, f"cf.customer_id IN {in_list(list(ids))}", as_of)
