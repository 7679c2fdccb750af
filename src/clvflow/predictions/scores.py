"""Every customer's predicted attributes from a fit, vectorized over the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.predictions.bgnbd import expected_orders, p_alive
from clvflow.predictions.fit import Fit
from clvflow.predictions.gamma_gamma import expected_order_value
from clvflow.predictions.summary import Summary


def score(fit: Fit, summary: Summary, horizon_days: float) -> pd.DataFrame:
    """customer_id, p_alive, predicted_orders (within ``horizon_days``),
    expected_order_value and predicted_clv (their product) for every customer of
    ``summary``; order values are missing when Gamma-Gamma could not be fitted."""
    params = fit.purchases.params
    f, r, age = summary.frequency, summary.recency, summary.age
    orders = expected_orders(params, horizon_days, f, r, age)
    if fit.spend is not None:
        value = expected_order_value(fit.spend.params, f, summary.monetary)
    else:
        value = np.full(len(summary), np.nan)
    return pd.DataFrame(
        {
            "customer_id": summary.customer_id,
            "p_alive": p_alive(params, f, r, age),
            "predicted_orders": orders,
            "expected_order_value": value,
            "predicted_clv": orders * value,
        }
    )
