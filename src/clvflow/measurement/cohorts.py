"""Monthly cohort retention: customers grouped by the month of their first order; for each
later month, the share of the cohort who ordered in it. Month 0 is 100% by definition;
months that have not happened yet (as of ``as_of``) are left empty."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from clvflow.data.sources import ShopData
from clvflow.segments.attributes import sql_timestamp


def _month_index(column: str) -> str:
    return (
        f"(CAST(EXTRACT(YEAR FROM {column}) AS INTEGER) * 12 "
        f"+ CAST(EXTRACT(MONTH FROM {column}) AS INTEGER) - 1)"
    )


def cohort_counts(data: ShopData, as_of: dt.datetime) -> pd.DataFrame:
    """cohort (month index), age (months since the first order), customers."""
    cte = (
        f"o AS (SELECT customer_id, placed_at FROM orders WHERE placed_at <= "
        f"{sql_timestamp(as_of)}), "
        "f AS (SELECT customer_id, MIN(placed_at) AS first_at FROM o GROUP BY customer_id), "
        f"m AS (SELECT DISTINCT o.customer_id, {_month_index('f.first_at')} AS cohort, "
        f"{_month_index('o.placed_at')} - {_month_index('f.first_at')} AS age "
        "FROM o JOIN f ON f.customer_id = o.customer_id)"
    )
    frame = data.frame(
        f"{data.with_clause(cte)}SELECT cohort, age, COUNT(*) AS customers "
        "FROM m GROUP BY cohort, age ORDER BY cohort, age"
    )
    return frame.astype({"cohort": "int64", "age": "int64", "customers": "int64"})


def _label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def retention_matrix(
    counts: pd.DataFrame, as_of: dt.datetime, *, cohorts: int = 12
) -> tuple[pd.DataFrame, pd.Series]:
    """(shares, sizes): rows are the last ``cohorts`` first-order months ('YYYY-MM'),
    columns the months since the first order (0 … cohorts − 1)."""
    last = as_of.year * 12 + as_of.month - 1
    rows = list(range(last - cohorts + 1, last + 1))
    ages = list(range(cohorts))
    wide = counts.pivot_table(index="cohort", columns="age", values="customers", aggfunc="sum")
    wide = wide.reindex(index=rows, columns=ages)
    sizes = wide[0].fillna(0).astype("int64") if 0 in wide else pd.Series(0, index=rows)
    shares = wide.div(sizes.astype("float64").where(sizes > 0), axis=0).fillna(0.0)
    observable = np.array([[r + a <= last for a in ages] for r in rows])
    shares = shares.where(observable & (sizes.to_numpy()[:, None] > 0))
    shares.index = [_label(r) for r in rows]
    sizes.index = shares.index
    return shares, sizes
