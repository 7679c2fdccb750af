"""What a segment can test: the customer's own columns plus attributes derived from
orders as of the run's ``as_of``, and the columns of orders, items and products.

Derived attributes (all computed from orders placed at or before ``as_of``):

- ``orders_count``, ``total_spent`` (0 without orders), ``avg_order_value``,
  ``first_order_at``, ``last_order_at``, ``days_since_first_order``, ``days_since_last_order``
  (calendar days in the shop's time zone; missing without orders);
- ``rfm_recency``, ``rfm_frequency``, ``rfm_monetary``: 1–5 by percentile rank among customers
  with at least one order (``1 + floor(5 × percent_rank)``, capped at 5; ties share a score,
  so one-time buyers all have frequency 1); missing without orders;
- ``rfm_segment``: the first rule that fits, R = recency score, F = frequency score —
  champions (R≥4, F≥4), loyal (R≥3, F≥3), new (R≥4, F=1), potential_loyalists (R≥3, F≤2),
  cant_lose (R≤2, F≥4), at_risk (R≤2, F=3), hibernating (R=2, F≤2), lost (R=1, F≤2);
- ``historical_clv``: average order value × purchase frequency × customer lifespan. With
  frequency = orders per year of lifespan and lifespan = years from the first order to
  ``as_of``, the product is the customer's total spent to date, which is what is stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "number", "date", "timestamp", "bool"]

DERIVED: dict[str, Kind] = {
    "orders_count": "number",
    "total_spent": "number",
    "avg_order_value": "number",
    "first_order_at": "timestamp",
    "last_order_at": "timestamp",
    "days_since_first_order": "number",
    "days_since_last_order": "number",
    "rfm_recency": "number",
    "rfm_frequency": "number",
    "rfm_monetary": "number",
    "rfm_segment": "text",
    "historical_clv": "number",
}
RFM_SEGMENTS = (
    "champions",
    "loyal",
    "new",
    "potential_loyalists",
    "cant_lose",
    "at_risk",
    "hibernating",
    "lost",
)


def kind_of(duckdb_type: str) -> Kind:
    """Map a DuckDB column type to the kind of tests it admits."""
    t = duckdb_type.upper()
    if t == "BOOLEAN":
        return "bool"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    numeric = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC", "HUGEINT", "UBIGINT")
    if any(t.startswith(n) or n in t for n in numeric):
        return "number"
    return "text"


@dataclass(frozen=True)
class Column:
    sql: str
    kind: Kind


def sql_timestamp(value: dt.datetime) -> str:
    return f"TIMESTAMP '{value.replace(tzinfo=None).isoformat(sep=' ')}'"


def sql_date(value: dt.date) -> str:
    return f"DATE '{value.isoformat()}'"


def customer_scope(customer_columns: dict[str, str]) -> dict[str, Column]:
    """Attributes testable on a customer, with the SQL that reads them from ``cf``."""
    scope = {
        name: Column(f'cf."{name}"', kind_of(t))
        for name, t in customer_columns.items()
        if name not in DERIVED
    }
    scope.update({name: Column(f'cf."{name}"', kind) for name, kind in DERIVED.items()})
    return scope


def order_scope(
    order_columns: dict[str, str],
    item_columns: dict[str, str] | None,
    product_columns: dict[str, str] | None,
) -> dict[str, tuple[Column, str]]:
    """Columns testable inside ``orders: {where: ...}``, each with its table alias."""
    scope: dict[str, tuple[Column, str]] = {}
    for alias, columns in (("p", product_columns), ("i", item_columns), ("o", order_columns)):
        for name, t in (columns or {}).items():
            scope[name] = (Column(f'{alias}."{name}"', kind_of(t)), alias)
    return scope


def customer_facts_sql(customer_columns: dict[str, str], as_of: dt.datetime) -> str:
    """The ``customer_facts`` relation: every customer with the derived attributes."""
    at = sql_timestamp(as_of)
    day = sql_date(as_of.date())
    # the customer's own columns, except those a derived attribute replaces
    own = ",\n           ".join(f'c."{c}"' for c in customer_columns if c not in DERIVED)

    def score(column: str) -> str:
        rank = f"PERCENT_RANK() OVER (ORDER BY {column})"
        return f"CAST(LEAST(5, 1 + FLOOR(5 * {rank})) AS INTEGER)"

    rfm_case = """CASE
        WHEN s.r >= 4 AND s.f >= 4 THEN 'champions'
        WHEN s.r >= 3 AND s.f >= 3 THEN 'loyal'
        WHEN s.r >= 4 AND s.f = 1 THEN 'new'
        WHEN s.r >= 3 THEN 'potential_loyalists'
        WHEN s.f >= 4 THEN 'cant_lose'
        WHEN s.f = 3 THEN 'at_risk'
        WHEN s.r = 2 THEN 'hibernating'
        WHEN s.r = 1 THEN 'lost'
      END"""
    return f"""order_facts AS (
    SELECT customer_id,
           COUNT(*) AS orders_count,
           SUM(total) AS total_spent,
           AVG(total) AS avg_order_value,
           MIN(placed_at) AS first_order_at,
           MAX(placed_at) AS last_order_at
    FROM orders
    WHERE placed_at <= {at}
    GROUP BY customer_id
  ),
  scored AS (
    SELECT *,
           {score("last_order_at")} AS r,
           {score("orders_count")} AS f,
           {score("total_spent")} AS m
    FROM order_facts
  ),
  customer_facts AS (
    SELECT {own},
           COALESCE(s.orders_count, 0) AS orders_count,
           COALESCE(s.total_spent, 0) AS total_spent,
           s.avg_order_value,
           s.first_order_at,
           s.last_order_at,
           {day} - CAST(s.first_order_at AS DATE) AS days_since_first_order,
           {day} - CAST(s.last_order_at AS DATE) AS days_since_last_order,
           s.r AS rfm_recency,
           s.f AS rfm_frequency,
           s.m AS rfm_monetary,
           {rfm_case} AS rfm_segment,
           COALESCE(s.total_spent, 0) AS historical_clv
    FROM customers AS c
    LEFT JOIN scored AS s ON s.customer_id = c.customer_id
  )"""
