"""The demo journeys' step conditions (``where`` in prefect.yaml) read off the simulated
past, for the two shapes the demo's journeys use:

- ``{historical_clv: {top_percent: P}}``: among the top P % of buyers by total spent at
  the week of the decision;
- ``{not: {orders: {where: {category: C | {in: [...]}}, within: last N months}}}``: no
  order with an item of those categories in the N months before the decision.

Any other condition holds for everyone.
"""

from __future__ import annotations

import re

import pandas as pd

from clvflow.demo.audiences import Spending, clv_top
from clvflow.demo.past_steps import WhereTest
from clvflow.project.journey_spec import JourneySpec

_LAST = re.compile(r"^\s*last\s+(\d+)\s+(day|week|month|year)s?\s*$")


def _lookback(text: object) -> pd.DateOffset | None:
    match = _LAST.match(str(text))
    if not match:
        return None
    return pd.DateOffset(**{match.group(2) + "s": int(match.group(1))})  # type: ignore[arg-type]


def _categories(test: object) -> list[str] | None:
    if isinstance(test, str):
        return [test]
    if isinstance(test, dict) and isinstance(test.get("in"), list):
        return [str(c) for c in test["in"]]
    return None


def _not_bought(where: dict[str, object]) -> tuple[list[str], pd.DateOffset] | None:
    inner = where.get("not")
    orders = inner.get("orders") if isinstance(inner, dict) else None
    if not isinstance(orders, dict) or not isinstance(orders.get("where"), dict):
        return None
    categories = _categories(orders["where"].get("category"))
    lookback = _lookback(orders.get("within"))
    return None if categories is None or lookback is None else (categories, lookback)


def _clv_percent(where: dict[str, object]) -> float | None:
    test = where.get("historical_clv")
    if isinstance(test, dict) and set(test) == {"top_percent"}:
        return float(test["top_percent"])
    return None


def where_test(
    spec: JourneySpec, orders: pd.DataFrame, items: pd.DataFrame, customers: pd.Series
) -> WhereTest:
    """The test :func:`clvflow.demo.past_steps.simulate_steps` asks per step.
    ``orders``: order_id, customer_id, placed_at, total; ``items``: order_id, category."""
    bought = items[["order_id", "category"]].merge(
        orders[["order_id", "customer_id", "placed_at"]], on="order_id"
    )
    spending = Spending(orders, customers)

    def test(index: int, probe: pd.DataFrame) -> pd.Series:
        where = spec.steps[index].where or {}
        holds = pd.Series(True, index=probe.index)
        recent = _not_bought(where)
        if recent is not None:
            categories, lookback = recent
            hits = probe.reset_index().merge(
                bought[bought["category"].isin(categories)], on="customer_id"
            )
            hits = hits[
                (hits["placed_at"] <= hits["at"]) & (hits["placed_at"] >= hits["at"] - lookback)
            ]
            holds[holds.index.isin(hits["index"])] = False
        percent = _clv_percent(where)
        if percent is not None:
            for _, week in probe.groupby(probe["at"].dt.to_period("W")):  # weekly checkpoints
                top = clv_top(spending, week["at"].min(), percent)
                holds[week.index] = top[spending.codes_of(week["customer_id"])]
        return holds

    return test
