"""Fit both models to a :class:`~clvflow.predictions.summary.Summary`, and keep the fit.

BG/NBD is fitted to every customer with an order; Gamma-Gamma to the repeat buyers (their
mean repeat purchase value). Times are in days. A fit is stored as JSON under the
project's cache folder, named by the summary's fingerprint (the data and the day), so
every run of one day on unchanged data fits once.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clvflow.errors import DataError
from clvflow.predictions.bgnbd import BgNbdFit, BgNbdParams, fit_bgnbd
from clvflow.predictions.gamma_gamma import GammaGammaFit, GammaGammaParams, fit_gamma_gamma
from clvflow.predictions.summary import Summary

UNIT_DAYS = {"days": 1, "weeks": 7}
# fewer than these, and the parameters say nothing about the shop's customers
MIN_CUSTOMERS = 20  # with an order
MIN_REPEAT_BUYERS = 5


@dataclass(frozen=True)
class Fit:
    """Both models as of one day; ``spend`` is None when Gamma-Gamma cannot be fitted
    (``spend_problem`` says why), and expected order values are then missing."""

    as_of_day: dt.date
    repeat_purchases: float  # the sum of the customers' frequencies
    purchases: BgNbdFit
    spend: GammaGammaFit | None
    spend_problem: str | None = None


def fit_models(summary: Summary, cache_dir: Path | None = None) -> Fit:
    """Both models fitted to ``summary`` (read from ``cache_dir`` when fitted before)."""
    path = None
    if cache_dir is not None:
        path = cache_dir / "predictions" / f"fit-{summary.fingerprint()}.json"
        if path.is_file():
            try:
                return _from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # unreadable: fit again
    fit = _fit(summary)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(_to_json(fit)))
        partial.replace(path)
    return fit


def _fit(summary: Summary) -> Fit:
    repeat_buyers = int(np.count_nonzero(summary.frequency > 0))
    if len(summary) < MIN_CUSTOMERS or repeat_buyers < MIN_REPEAT_BUYERS:
        raise DataError(
            f"cannot fit the purchase model as of {summary.as_of_day}: "
            f"{len(summary)} customers with orders, {repeat_buyers} with a repeat purchase",
            hint=f"the models need at least {MIN_CUSTOMERS} customers with orders, "
            f"{MIN_REPEAT_BUYERS} of whom ordered on more than one day",
        )
    try:
        purchases = fit_bgnbd(summary.frequency, summary.recency, summary.age)
    except ValueError as exc:
        raise DataError(
            f"cannot fit the purchase model (BG/NBD) as of {summary.as_of_day}: {exc}"
        ) from None
    repeat = summary.frequency > 0
    total = float(summary.frequency.sum())
    try:
        spend = fit_gamma_gamma(summary.frequency[repeat], summary.monetary[repeat])
    except ValueError as exc:
        return Fit(summary.as_of_day, total, purchases, None, str(exc))
    return Fit(summary.as_of_day, total, purchases, spend)


def describe(fit: Fit, horizon_days: int, unit: str = "days") -> dict[str, Any]:
    """The fit as ``predict fit`` reports it, with times in ``unit`` (days or weeks): α
    scales with the unit, and so does the log-likelihood (by −ln(unit) per repeat
    purchase), while r, a and b do not."""
    scale = UNIT_DAYS[unit]
    p = fit.purchases.params
    purchases = {
        "model": "BG/NBD",
        "r": p.r,
        "alpha": p.alpha / scale,
        "a": p.a,
        "b": p.b,
        "log_likelihood": fit.purchases.log_likelihood + math.log(scale) * fit.repeat_purchases,
        "customers": fit.purchases.customers,
    }
    spend: dict[str, Any] | None = None
    if fit.spend is not None:
        s = fit.spend.params
        spend = {
            "model": "Gamma-Gamma",
            "p": s.p,
            "q": s.q,
            "gamma": s.gamma,
            "log_likelihood": fit.spend.log_likelihood,
            "customers": fit.spend.customers,
            "frequency_value_correlation": fit.spend.frequency_value_correlation,
        }
    return {
        "as_of": fit.as_of_day.isoformat(),
        "time_unit": unit,
        "horizon": horizon_days / scale,
        "purchases": purchases,
        "spend": spend,
        "spend_problem": fit.spend_problem,
    }


def _to_json(fit: Fit) -> dict[str, Any]:
    return {
        "as_of_day": fit.as_of_day.isoformat(),
        "repeat_purchases": fit.repeat_purchases,
        "purchases": {**asdict(fit.purchases)},
        "spend": asdict(fit.spend) if fit.spend is not None else None,
        "spend_problem": fit.spend_problem,
    }


def _from_json(raw: dict[str, Any]) -> Fit:
    purchases = dict(raw["purchases"])
    purchases["params"] = BgNbdParams(**purchases["params"])
    spend = None
    if raw["spend"] is not None:
        spend_raw = dict(raw["spend"])
        spend_raw["params"] = GammaGammaParams(**spend_raw["params"])
        spend = GammaGammaFit(**spend_raw)
    return Fit(
        dt.date.fromisoformat(raw["as_of_day"]),
        float(raw["repeat_purchases"]),
        BgNbdFit(**purchases),
        spend,
        raw["spend_problem"],
    )
