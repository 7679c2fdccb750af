"""What a segment can test: the customer's own columns plus attributes derived from
orders as of the run's ``as_of``, and the columns of orders, items and products.

Derived attributes count only orders placed at or before ``as_of`` (later orders do not
exist yet) and only orders of customers in the customers data:

- ``orders_count`` and ``total_spent``: the number of orders and the sum of their totals,
  0 for a customer without orders;
- ``avg_order_value`` (total spent / orders count), ``first_order_at``, ``last_order_at``,
  ``days_since_first_order``, ``days_since_last_order`` (calendar days between the order's
  day and ``as_of``'s day, in the shop's local time): missing without orders;
- ``rfm_recency``, ``rfm_frequency``, ``rfm_monetary``: scores 1–5 ranking the customers
  with at least one order by last order time, orders count and total spent:
  ``1 + floor(5 × percent_rank)``, capped at 5, where ``percent_rank = (rank − 1) / (n − 1)``
  (0 when n = 1) and ties share the lowest rank, so all one-time buyers have frequency 1.
  Missing without orders;
- ``rfm_segment``: the first of these rules that fits the recency score R and the frequency
  score F (missing without orders):

  =======================  ============  =============================
  segment                  rule          meaning
  =======================  ============  =============================
  ``champions``            R ≥ 4, F ≥ 4  bought recently and often
  ``loyal``                R ≥ 3, F ≥ 3  regular buyers, fairly recent
  ``new``                  R ≥ 4, F = 1  first order recently
  ``potential_loyalists``  R ≥ 3, F ≤ 2  recent, a few orders
  ``cant_lose``            R ≤ 2, F ≥ 4  used to buy often, gone quiet
  ``at_risk``              R ≤ 2, F = 3  bought regularly, gone quiet
  ``hibernating``          R = 2, F ≤ 2  few orders, a while ago
  ``lost``                 R = 1, F ≤ 2  few orders, long ago
  =======================  ============  =============================

- ``historical_clv``: the customer's historical lifetime value, average order value ×
  purchase frequency × customer lifespan. With lifespan = the time from the first order to
  ``as_of`` and frequency = orders per unit of that lifespan, the product is
  ``avg_order_value × orders_count`` = ``total_spent``: what the customer has spent to
  date. Like the other averages, it is missing (not 0) for a customer without orders, so
  ``top_percent``/``bottom_percent`` rank buyers only.
- ``p_alive``, ``predicted_orders``, ``expected_order_value``, ``predicted_clv``: the
  predictions of the BG/NBD and Gamma-Gamma models fitted to the shop's orders as of
  ``as_of`` (:mod:`clvflow.predictions`); missing for a customer without orders.
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
# Model predictions (clvflow.predictions); derived attributes too, read from a relation of
# their own rather than from the order aggregate.
PREDICTED: dict[str, Kind] = {
    "p_alive": "number",
    "predicted_orders": "number",
    "expected_order_value": "number",
    "predicted_clv": "number",
}
DERIVED.update(PREDICTED)
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


def kind_of(sql_type: str) -> Kind:
    """Map a column type (DuckDB or PostgreSQL) to the kind of tests it admits."""
    t = sql_type.upper()
    if t in ("BOOLEAN", "BOOL"):
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
    """Columns testable inside ``orders: {where: ...}``, each with its table alias; a name
    in several tables means the order's column, then the item's."""
    scope: dict[str, tuple[Column, str]] = {}
    for alias, columns in (("p", product_columns), ("i", item_columns), ("o", order_columns)):
        for name, t in (columns or {}).items():
            scope[name] = (Column(f'{alias}."{name}"', kind_of(t)), alias)
    return scope
