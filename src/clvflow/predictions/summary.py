"""The per-customer inputs of the models, computed by the data engine (DuckDB or the
shop's PostgreSQL) in one query over orders.

Purchases are counted per calendar day in the shop's local time (several orders on one day
are one purchase of their summed totals), for the customers in the customers data with an
order at or before ``as_of``:

- ``frequency``: purchase days after the first one (repeat purchases);
- ``recency``: days from the first purchase day to the last;
- ``age``: days from the first purchase day to ``as_of``'s day;
- ``monetary``: the mean value of the repeat purchase days (missing without one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np

from clvflow.data.sources import ShopData
from clvflow.segments.attributes import sql_date, sql_timestamp

SLICE_ORDERS = 6_000_000


@dataclass(frozen=True)
class Summary:
    """One row per customer with orders, as parallel arrays."""

    as_of_day: dt.date
    customer_id: np.ndarray  # object (str)
    frequency: np.ndarray  # float64
    recency: np.ndarray
    age: np.ndarray
    monetary: np.ndarray  # NaN where frequency == 0

    def __len__(self) -> int:
        return len(self.customer_id)

    def fingerprint(self) -> str:
        """A digest of every input a fit depends on, whatever the rows' order."""
        import pandas as pd

        rows = pd.DataFrame(
            {
                "customer_id": self.customer_id,
                "frequency": self.frequency,
                "recency": self.recency,
                "age": self.age,
                "monetary": self.monetary,
            }
        )
        total = int(pd.util.hash_pandas_object(rows, index=False).to_numpy().sum(dtype=np.uint64))
        digest = hashlib.sha256(f"{self.as_of_day.isoformat()}:{len(self)}:{total}".encode())
        return digest.hexdigest()[:32]


def summary_sql(data: ShopData, as_of: dt.datetime, part: tuple[int, int] | None = None) -> str:
    """The query giving customer_id, frequency, recency, age and monetary (see the module
    docstring), in no particular order; ``part=(k, n)``: only the k-th of n slices of the
    customers (DuckDB)."""
    at, day = sql_timestamp(as_of), sql_date(as_of.date())
    where = f"o.placed_at <= {at}"
    if part is not None:
        where += f" AND hash(o.customer_id) % {part[1]} = {part[0]}"
    ctes = (
        "purchase_days AS (\n"
        "    SELECT o.customer_id, CAST(o.placed_at AS DATE) AS day,\n"
        "           SUM(CAST(o.total AS DECIMAL(18, 4))) AS value\n"
        f"    FROM orders AS o\n    WHERE {where}\n"
        "      AND o.customer_id IN (SELECT customer_id FROM customers)\n"
        "    GROUP BY o.customer_id, CAST(o.placed_at AS DATE)\n  )",
        "firsts AS (\n"
        "    SELECT customer_id, MIN(day) AS first_day FROM purchase_days GROUP BY customer_id\n"
        "  )",
    )
    # sums of decimals are exact, so the same orders give the same inputs (and fingerprint)
    # whatever order the engine adds them in; the first day is joined back rather than
    # found by a window over each customer's days (no sort)
    return (
        f"{data.with_clause(*ctes)}"
        "SELECT p.customer_id,\n"
        "       CAST(COUNT(*) - 1 AS DOUBLE PRECISION) AS frequency,\n"
        "       CAST(MAX(p.day) - MIN(p.day) AS DOUBLE PRECISION) AS recency,\n"
        f"       CAST({day} - MIN(p.day) AS DOUBLE PRECISION) AS age,\n"
        "       CAST(SUM(p.value) FILTER (WHERE p.day > f.first_day) AS DOUBLE PRECISION)\n"
        "         / NULLIF(COUNT(*) - 1, 0) AS monetary\n"
        "FROM purchase_days AS p JOIN firsts AS f ON f.customer_id = p.customer_id\n"
        "GROUP BY p.customer_id"
    )


def read_summary(
    data: ShopData, as_of: dt.datetime, *, slice_orders: int = SLICE_ORDERS
) -> Summary:
    """The models' inputs as of ``as_of`` (a shop-local time).

    DuckDB computes them in slices of the customers of about ``slice_orders`` orders
    each, which bounds the memory of its aggregate by customer and purchase day;
    PostgreSQL in one query."""
    import pandas as pd

    slices = 1
    if data.dialect == "duckdb":
        orders = int(data.rows(f"{data.with_clause()}SELECT COUNT(*) FROM orders")[0][0])
        slices = max(1, -(-orders // slice_orders))
    parts = [None] if slices == 1 else [(k, slices) for k in range(slices)]
    frame = pd.concat([data.frame(summary_sql(data, as_of, part)) for part in parts])
    return Summary(
        as_of_day=as_of.date(),
        customer_id=frame["customer_id"].astype(str).to_numpy(dtype=object),
        frequency=frame["frequency"].to_numpy(dtype=np.float64),
        recency=frame["recency"].to_numpy(dtype=np.float64),
        age=frame["age"].to_numpy(dtype=np.float64),
        monetary=frame["monetary"].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan),
    )
