"""How well the models predicted the past: fit on the orders up to a cut-off ``holdout``
before ``as_of``, predict each customer's purchases between the cut-off and ``as_of``,
and compare with the purchases that happened.

The customers compared are those with an order by the cut-off; a purchase is an order day
(as in the fit). The naive baseline repeats each customer's past rate: repeat purchase
days per day since the first one, times the holdout's days (0 for a customer whose first
order was on the cut-off day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvflow.data.sources import ShopData
from clvflow.predictions.bgnbd import expected_orders
from clvflow.predictions.fit import Fit, fit_models
from clvflow.predictions.summary import read_summary
from clvflow.segments.attributes import sql_timestamp

TOP_BUCKET = 7  # repeat purchases of 7 or more share the chart's last bar


@dataclass(frozen=True)
class Check:
    cutoff: dt.datetime
    as_of: dt.datetime
    holdout_days: int
    fit: Fit
    customers: int
    actual: float  # purchases in the holdout, all customers
    predicted: float
    naive: float
    mae: float  # mean absolute error per customer
    naive_mae: float
    by_repeat: pd.DataFrame  # repeat purchases by the cut-off → customers, means

    @property
    def improvement(self) -> float:
        """How much smaller the model's error is than the baseline's (0.25 = 25 %)."""
        return 1.0 - self.mae / self.naive_mae if self.naive_mae > 0 else 0.0


def check_predictions(
    data: ShopData, as_of: dt.datetime, holdout: dt.timedelta, cache_dir: Path | None = None
) -> Check:
    """Fit as of ``as_of − holdout`` (end of that day) and compare with what followed."""
    cut_day = (as_of - holdout).date()
    cutoff = dt.datetime.combine(cut_day, dt.time(23, 59, 59))
    days = (as_of.date() - cut_day).days
    summary = read_summary(data, cutoff)
    fit = fit_models(summary, cache_dir)
    predicted = expected_orders(
        fit.purchases.params, float(days), summary.frequency, summary.recency, summary.age
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(summary.age > 0, summary.frequency / summary.age, 0.0)
    naive = rate * days
    happened = _purchases_between(data, cutoff, as_of)
    actual = pd.Series(summary.customer_id).map(happened).fillna(0).to_numpy(dtype=np.float64)
    buckets = np.minimum(summary.frequency, TOP_BUCKET).astype(int)
    by_repeat = (
        pd.DataFrame(
            {"repeat_purchases": buckets, "actual": actual, "predicted": predicted, "naive": naive}
        )
        .groupby("repeat_purchases")
        .agg(
            customers=("actual", "size"),
            actual=("actual", "mean"),
            predicted=("predicted", "mean"),
            naive=("naive", "mean"),
        )
        .reset_index()
    )
    return Check(
        cutoff=cutoff,
        as_of=as_of,
        holdout_days=days,
        fit=fit,
        customers=len(summary),
        actual=float(actual.sum()),
        predicted=float(predicted.sum()),
        naive=float(naive.sum()),
        mae=float(np.abs(predicted - actual).mean()),
        naive_mae=float(np.abs(naive - actual).mean()),
        by_repeat=by_repeat,
    )


def _purchases_between(data: ShopData, start: dt.datetime, end: dt.datetime) -> pd.Series:
    """Order days per customer with an order in (start, end]."""
    sql = (
        f"{data.with_clause()}SELECT customer_id, "
        "COUNT(DISTINCT CAST(placed_at AS DATE)) AS purchases\n"
        f"FROM orders\nWHERE placed_at > {sql_timestamp(start)} "
        f"AND placed_at <= {sql_timestamp(end)}\n"
        "  AND customer_id IN (SELECT customer_id FROM customers)\nGROUP BY customer_id"
    )
    frame = data.frame(sql)
    return pd.Series(
        frame["purchases"].to_numpy(dtype=np.float64),
        index=frame["customer_id"].astype(str).to_numpy(),
    )


def check_summary(check: Check) -> dict[str, Any]:
    """The check as plain values (JSON, artifacts and the report read this)."""
    rows = [
        {
            "label": _label(int(r["repeat_purchases"])),
            "customers": int(r["customers"]),
            "actual": float(r["actual"]),
            "predicted": float(r["predicted"]),
            "naive": float(r["naive"]),
        }
        for r in check.by_repeat.to_dict(orient="records")
    ]
    return {
        "cutoff": check.cutoff.isoformat(),
        "as_of": check.as_of.isoformat(),
        "holdout_days": check.holdout_days,
        "customers": check.customers,
        "actual_purchases": check.actual,
        "predicted_purchases": check.predicted,
        "naive_purchases": check.naive,
        "mean_absolute_error": check.mae,
        "naive_mean_absolute_error": check.naive_mae,
        "improvement": check.improvement,
        "by_repeat_purchases": rows,
    }


def _label(repeat: int) -> str:
    return f"{repeat}+" if repeat == TOP_BUCKET else str(repeat)
