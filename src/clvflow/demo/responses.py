"""The customers' responses in the simulated past: extra orders placed by treated
customers, at a rate that makes a campaign's true effect exactly the one chosen.

A campaign is measured on units (its messages, or a journey's entries), each with a window
in which an order converts it. Without the campaign a unit converts at its natural rate
(the orders the shop would have had anyway). A treated unit that did not convert naturally
and got the message that works (the campaign's send, or the journey's chosen step) orders
once more, with the probability that adds ``uplift × treated units`` conversions in
expectation; the holdout gets no extra orders. The conversion rates of the two groups
then differ by ``uplift`` plus chance, which is what the report's 95 % interval covers.

A response order is placed uniformly between that message and the end of the unit's
window (never after the data's end), and repeats one of the customer's earlier orders
(items, quantities, prices): the customer buys again what they bought before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.demo.timing import at_most, uniform_between
from clvflow.errors import ClvflowError

UNIT_COLUMNS = ("unit", "customer_id", "start", "end", "treated", "responsive_at")


def converted(units: pd.DataFrame, orders: pd.DataFrame) -> pd.Series:
    """Per unit: an order of the customer placed in (start, end]."""
    joined = units[["unit", "customer_id", "start", "end"]].merge(
        orders[["customer_id", "placed_at"]], on="customer_id"
    )
    inside = joined[
        (joined["placed_at"] > joined["start"]) & (joined["placed_at"] <= joined["end"])
    ]
    return units["unit"].isin(inside["unit"])


def draw_responses(
    rng: np.random.Generator,
    units: pd.DataFrame,
    orders: pd.DataFrame,
    uplift: float,
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    """(unit, customer_id, placed_at) of the response orders that give ``units``
    (``UNIT_COLUMNS``) a conversion uplift of ``uplift`` in expectation."""
    none = pd.DataFrame(
        {"unit": [], "customer_id": [], "placed_at": pd.Series(dtype="datetime64[us]")}
    )
    treated = units["treated"].astype(bool)
    if uplift <= 0 or not treated.any():
        return none
    last = at_most(units["end"], data_end - pd.Timedelta(seconds=1))
    able = (
        treated
        & ~converted(units, orders)
        & units["responsive_at"].notna()
        & (units["responsive_at"] < last)
    )
    if not able.any():  # a shop too small for anyone to answer: no extra orders
        return none
    rate = uplift * int(treated.sum()) / int(able.sum())
    if rate > 1:
        raise ClvflowError(
            f"a true effect of {100 * uplift:g} points needs more treated customers who did "
            "not order anyway than the demo shop has",
            hint="lower it in src/clvflow/demo/effects.py, or generate a larger shop",
        )
    chosen = units[able & (rng.random(len(units)) < rate)]
    placed = uniform_between(rng, chosen["responsive_at"], last[chosen.index])
    return pd.DataFrame(
        {"unit": chosen["unit"], "customer_id": chosen["customer_id"], "placed_at": placed}
    ).reset_index(drop=True)


def _next_ids(orders: pd.DataFrame, count: int) -> list[str]:
    """Fresh order ids after the shop's last one, in its format (``O0020001``)."""
    digits = orders["order_id"].str.extract(r"^([A-Za-z]*)(\d+)$")
    prefix = str(digits[0].iloc[0]) if len(digits) else "O"
    width = int(digits[1].str.len().max()) if len(digits) else 7
    start = int(digits[1].astype("int64").max()) + 1 if len(digits) else 1
    return [f"{prefix}{n:0{width}d}" for n in range(start, start + count)]


def response_orders(
    rng: np.random.Generator,
    responses: pd.DataFrame,
    orders: pd.DataFrame,
    items: pd.DataFrame,
    currency: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The orders (order_id, customer_id, placed_at, total in cents, currency) and their
    items (order_id, product_id, quantity, unit_price as written, category) of
    ``responses``, each a repeat of an earlier order of the customer (any order of the
    shop when they have none)."""
    picked = responses.sort_values(["placed_at", "customer_id"]).reset_index(drop=True)
    picked["order_id"] = _next_ids(orders, len(picked))
    earlier = picked[["order_id", "customer_id", "placed_at"]].merge(
        orders[["order_id", "customer_id", "placed_at"]].rename(
            columns={"order_id": "source", "placed_at": "source_at"}
        ),
        on="customer_id",
    )
    earlier = earlier[earlier["source_at"] < earlier["placed_at"]].copy()
    earlier["key"] = rng.random(len(earlier))
    best = earlier.loc[earlier.groupby("order_id")["key"].idxmax(), ["order_id", "source"]]
    source = picked["order_id"].map(best.set_index("order_id")["source"])
    anyone = orders["order_id"].to_numpy()[rng.integers(0, len(orders), len(picked))]
    picked["source"] = source.fillna(pd.Series(anyone, index=picked.index))
    lines = picked[["order_id", "source"]].merge(
        items.rename(columns={"order_id": "source"}), on="source"
    )
    lines = lines.drop(columns="source")
    cents = (lines["unit_price"].astype(float) * 100).round().astype("int64")
    totals = (cents * lines["quantity"].astype("int64")).groupby(lines["order_id"]).sum()
    new = pd.DataFrame(
        {
            "order_id": picked["order_id"],
            "customer_id": picked["customer_id"],
            "placed_at": picked["placed_at"].astype("datetime64[us]"),
            "total": picked["order_id"].map(totals).fillna(0).astype("int64"),
            "currency": currency,
        }
    )
    return new, lines.reset_index(drop=True)
