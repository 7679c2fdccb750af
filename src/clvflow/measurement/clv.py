"""CLV and retention over the shop's data, as of a moment, in SQL the segment engine shares
(DuckDB over files, or pushed down to PostgreSQL).

- Historical CLV has the segment attribute ``historical_clv``'s definition: average order
  value × purchase frequency × lifespan, which is the customer's total spent on orders
  placed by ``as_of``. As there, only orders of customers in the customers data count.
- Average order value = revenue / orders; purchase frequency = orders / buyers; repeat
  purchase rate = buyers with two or more orders / buyers.
- Retention over a period ``[since, as_of]``: of the customers who ordered in the period of
  the same length just before it, the share who ordered again within it.
- LTV:CAC per acquisition channel: the channel's mean historical CLV over every customer
  acquired through it (a customer without orders counts as 0: acquiring them cost the same)
  divided by its configured cost per customer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from clvflow.data.sources import ShopData, quote_ident
from clvflow.errors import ConfigError
from clvflow.measurement.settings import AcquisitionCost
from clvflow.segments.attributes import sql_timestamp


@dataclass(frozen=True)
class ShopMetrics:
    as_of: dt.datetime
    since: dt.datetime
    customers: int
    buyers: int
    repeat_buyers: int
    orders: int
    revenue: float
    period_buyers: int
    period_orders: int
    period_revenue: float
    new_buyers: int
    prior_buyers: int
    retained: int
    mean_clv: float  # over buyers
    median_clv: float

    @property
    def average_order_value(self) -> float | None:
        return self.revenue / self.orders if self.orders else None

    @property
    def purchase_frequency(self) -> float | None:
        return self.orders / self.buyers if self.buyers else None

    @property
    def repeat_purchase_rate(self) -> float | None:
        return self.repeat_buyers / self.buyers if self.buyers else None

    @property
    def period_average_order_value(self) -> float | None:
        return self.period_revenue / self.period_orders if self.period_orders else None

    @property
    def period_purchase_frequency(self) -> float | None:
        return self.period_orders / self.period_buyers if self.period_buyers else None

    @property
    def retention_rate(self) -> float | None:
        return self.retained / self.prior_buyers if self.prior_buyers else None


def _orders_cte(as_of: dt.datetime) -> str:
    """``o``: the orders placed by ``as_of`` of customers in the customers data."""
    return (
        "o AS (SELECT customer_id, placed_at, CAST(total AS DOUBLE PRECISION) AS total "
        f"FROM orders WHERE placed_at <= {sql_timestamp(as_of)} "
        "AND customer_id IN (SELECT customer_id FROM customers))"
    )


def clv_values(data: ShopData, as_of: dt.datetime) -> pd.Series:
    """Historical CLV of every customer with at least one order by ``as_of``."""
    frame = data.frame(
        f"{data.with_clause(_orders_cte(as_of))}SELECT SUM(total) AS clv FROM o "
        "GROUP BY customer_id ORDER BY clv"
    )
    return frame["clv"].astype("float64")


def shop_metrics(data: ShopData, as_of: dt.datetime, since: dt.datetime) -> ShopMetrics:
    start = sql_timestamp(since)
    prior = sql_timestamp(since - (as_of - since))
    cte = (
        f"{_orders_cte(as_of)}, "
        "firsts AS (SELECT customer_id, MIN(placed_at) AS first_at, COUNT(*) AS n "
        "FROM o GROUP BY customer_id), "
        f"cur AS (SELECT DISTINCT customer_id FROM o WHERE placed_at >= {start}), "
        f"prev AS (SELECT DISTINCT customer_id FROM o "
        f"WHERE placed_at >= {prior} AND placed_at < {start})"
    )
    row = data.rows(
        f"""{data.with_clause(cte)}SELECT
          (SELECT COUNT(*) FROM customers),
          (SELECT COUNT(*) FROM firsts),
          (SELECT COUNT(*) FROM firsts WHERE n >= 2),
          (SELECT COUNT(*) FROM o),
          (SELECT COALESCE(SUM(total), 0) FROM o),
          (SELECT COUNT(*) FROM cur),
          (SELECT COUNT(*) FROM o WHERE placed_at >= {start}),
          (SELECT COALESCE(SUM(total), 0) FROM o WHERE placed_at >= {start}),
          (SELECT COUNT(*) FROM firsts WHERE first_at >= {start}),
          (SELECT COUNT(*) FROM prev),
          (SELECT COUNT(*) FROM prev JOIN cur ON cur.customer_id = prev.customer_id)"""
    )[0]
    clv = clv_values(data, as_of)
    return ShopMetrics(
        as_of=as_of,
        since=since,
        customers=int(row[0]),
        buyers=int(row[1]),
        repeat_buyers=int(row[2]),
        orders=int(row[3]),
        revenue=float(row[4]),
        period_buyers=int(row[5]),
        period_orders=int(row[6]),
        period_revenue=float(row[7]),
        new_buyers=int(row[8]),
        prior_buyers=int(row[9]),
        retained=int(row[10]),
        mean_clv=float(clv.mean()) if len(clv) else 0.0,
        median_clv=float(clv.median()) if len(clv) else 0.0,
    )


def ltv_to_cac(
    data: ShopData, as_of: dt.datetime, acquisition: AcquisitionCost, config_path: str
) -> pd.DataFrame:
    """channel, customers, mean_clv, cac (or NaN), ltv_cac (or NaN), one row per channel."""
    column = acquisition.channel_column
    if column not in data.columns["customers"]:
        raise ConfigError(
            f"the customers data has no column '{column}'",
            path=config_path,
            key="measurement.acquisition.channel_column",
            hint="name the customers column that holds each customer's acquisition channel",
        )
    spent = "spent AS (SELECT customer_id, SUM(total) AS clv FROM o GROUP BY customer_id)"
    cte = f"{_orders_cte(as_of)}, {spent}"
    frame = data.frame(
        f"{data.with_clause(cte)}SELECT CAST(c.{quote_ident(column)} AS VARCHAR) AS channel, "
        "COUNT(*) AS customers, AVG(COALESCE(s.clv, 0)) AS mean_clv "
        "FROM customers AS c LEFT JOIN spent AS s ON s.customer_id = c.customer_id "
        "GROUP BY 1 ORDER BY 1"
    )
    frame["channel"] = frame["channel"].astype(object).where(frame["channel"].notna(), "(none)")
    frame["customers"] = frame["customers"].astype("int64")
    frame["mean_clv"] = frame["mean_clv"].astype("float64")
    costs = acquisition.cost_per_customer
    frame["cac"] = frame["channel"].map(lambda c: costs.get(str(c), float("nan"))).astype(float)
    frame["ltv_cac"] = frame["mean_clv"] / frame["cac"]
    return frame
