"""The Gamma-Gamma model of order values (Colombo & Jiang 1999, "A stochastic RFM model",
Journal of Interactive Marketing 13(3); Fader, Hardie & Lee 2005, "RFM and CLV: Using
Iso-Value Curves for Customer Base Analysis", Journal of Marketing Research 42(4), 415-430;
Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value").

A customer's order values are Gamma(p, ν) draws (shape p, rate ν); across customers
ν ~ Gamma(q, γ) (shape q, rate γ). The data of a customer are ``x``, the number of repeat
orders, and ``m_x``, their average value; the first order is left out, as in the papers.

Formulas:

- The sum x·m_x is Gamma(p x, ν), so the likelihood of one customer's average is::

      f(m_x | x) = Γ(p x + q) / (Γ(p x) Γ(q)) · γ^q m_x^(p x − 1) x^(p x)
                   / (γ + x m_x)^(p x + q)

- ν given the data is Gamma(p x + q, γ + x m_x), so the expected value of the customer's
  next order is::

      E[M | x, m_x] = p (γ + x m_x) / (p x + q − 1)
                    = w · m_x + (1 − w) · p γ / (q − 1),   w = p x / (p x + q − 1)

  a weighted mean of the customer's own average and the population mean p γ / (q − 1)
  (which exists only for q > 1); a customer without repeat orders gets the population mean.

Parameters are estimated by maximum likelihood over their logarithms (L-BFGS-B with the
analytic gradient). Values are divided by their mean first, so the fit does not depend on
the currency unit. The model assumes that the number of orders and their values are
independent; the fit reports the Pearson correlation of x and m_x for the user to judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from clvflow.predictions.fitting import LOG_BOUND, estimate
from clvflow.predictions.fitting import vector as vector_of
from clvflow.predictions.fitting import weights as weights_of

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GammaGammaParams:
    """Shape p of the order values; shape q and rate γ of their rate parameter ν (γ in the
    currency unit of the data)."""

    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class GammaGammaFit:
    """Maximum-likelihood parameters, the log-likelihood there, the number of customers
    fitted (weights summed) and the Pearson correlation of their x and m_x."""

    params: GammaGammaParams
    log_likelihood: float
    customers: int
    frequency_value_correlation: float


def _data(
    frequency: npt.ArrayLike, monetary: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """x, m_x, and which customers have repeat orders of positive average value (NaN
    monetary values count as missing)."""
    x = vector_of("frequency", frequency, non_negative=True)
    m = vector_of("monetary", monetary)
    if x.shape != m.shape:
        raise ValueError(f"frequency and monetary differ in length: {x.size}, {m.size}")
    if np.any(np.isinf(m)):
        raise ValueError("monetary must not be infinite")
    with np.errstate(invalid="ignore"):
        usable = (x > 0) & (m > 0)
    return x, m, usable


def _check_params(params: GammaGammaParams) -> None:
    values = (params.p, params.q, params.gamma)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"Gamma-Gamma parameters must be positive and finite, got {params}")


def log_likelihood(
    params: GammaGammaParams,
    frequency: npt.ArrayLike,
    monetary: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
) -> float:
    """The total log-likelihood of the customers' average order values, over the customers
    with repeat orders of positive average value."""
    _check_params(params)
    x, m, usable = _data(frequency, monetary)
    w = weights_of(weights, x.size)[usable]
    x, m = x[usable], m[usable]
    p, q, gamma = params.p, params.q, params.gamma
    px = p * x
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + x * m)
    )
    return float(np.dot(w, ll))


class _Objective:
    """Minus the mean log-likelihood per customer and its gradient in the log-parameters.
    The terms are grouped by distinct x and by distinct total x·m_x; the rest are sums
    computed once."""

    def __init__(self, x: FloatArray, m: FloatArray, w: FloatArray) -> None:
        self.total = float(w.sum())
        self.x, x_index = np.unique(x, return_inverse=True)
        self.weight_x = np.bincount(x_index, weights=w, minlength=self.x.size)
        self.log_x = np.log(self.x)
        log_m = np.log(m)
        self.sum_x_log_m = float(np.dot(w * x, log_m))
        self.sum_log_m = float(np.dot(w, log_m))
        self.spend, spend_index = np.unique(x * m, return_inverse=True)
        self.weight_spend = np.bincount(spend_index, weights=w, minlength=self.spend.size)
        self.xweight_spend = np.bincount(spend_index, weights=w * x, minlength=self.spend.size)

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        p, q, gamma = np.exp(theta)
        px = p * self.x
        wx = self.weight_x
        # Sums over distinct totals s of w ln(γ + s), w x ln(γ + s), w / (γ + s), w x / (γ + s).
        shifted = gamma + self.spend
        log_spend = np.log(shifted)
        log_w, log_xw = np.dot(log_spend, self.weight_spend), np.dot(log_spend, self.xweight_spend)
        inv_spend = np.reciprocal(shifted, out=shifted)
        inv_w, inv_xw = np.dot(inv_spend, self.weight_spend), np.dot(inv_spend, self.xweight_spend)
        ll = float(np.dot(wx, special.gammaln(px + q) - special.gammaln(px) + px * self.log_x))
        ll += self.total * (q * np.log(gamma) - special.gammaln(q))
        ll += p * self.sum_x_log_m - self.sum_log_m - p * log_xw - q * log_w
        psi = special.digamma(px + q)
        d_p = float(np.dot(wx * self.x, psi - special.digamma(px) + self.log_x))
        d_p += self.sum_x_log_m - log_xw
        d_q = float(np.dot(wx, psi)) - self.total * (special.digamma(q) - np.log(gamma)) - log_w
        d_gamma = self.total * q / gamma - p * inv_xw - q * inv_w
        gradient = np.array([d_p * p, d_q * q, d_gamma * gamma]) / -self.total
        return -ll / self.total, gradient


def _correlation(x: FloatArray, m: FloatArray, w: FloatArray) -> float:
    """Weighted Pearson correlation; NaN when x or m is constant."""
    total = w.sum()
    dx = x - np.dot(w, x) / total
    dm = m - np.dot(w, m) / total
    var_x, var_m = float(np.dot(w, dx * dx)), float(np.dot(w, dm * dm))
    if var_x <= 0 or var_m <= 0:
        return float("nan")
    return float(np.dot(w, dx * dm)) / float(np.sqrt(var_x * var_m))


def fit_gamma_gamma(
    frequency: npt.ArrayLike,
    monetary: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
) -> GammaGammaFit:
    """Fits the Gamma-Gamma model by maximum likelihood to the customers with repeat orders
    (x > 0) of positive average value m_x; the others are left out. ``weights`` counts
    identical customers. Raises ValueError on invalid data, fewer than 2 such customers, a
    failed fit, or q ≤ 1 (then the population has no mean order value)."""
    x, m, usable = _data(frequency, monetary)
    w = weights_of(weights, x.size)
    usable &= w > 0
    x, m, w = x[usable], m[usable], w[usable]
    if w.sum() < 2:
        raise ValueError(
            "the Gamma-Gamma model needs at least 2 customers with repeat orders of positive "
            f"value, got {round(float(w.sum()))}"
        )
    scale = float(np.dot(w, m) / w.sum())
    objective = _Objective(x, m / scale, w)
    # Start: p = 1, q = 3, and γ such that the population mean p γ / (q − 1) is the data's.
    start = np.log(np.array([1.0, 3.0, 2.0]))
    result = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * 3,
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    theta = estimate(result, objective, "Gamma-Gamma", ("p", "q", "γ"))
    p, q, gamma = (float(v) for v in np.exp(theta))
    if q <= 1.0:
        raise ValueError(
            f"the Gamma-Gamma fit gives q = {q:.4g} ≤ 1: the population's mean order value "
            "does not exist (the values are too heavy-tailed for this model)"
        )
    params = GammaGammaParams(p=p, q=q, gamma=gamma * scale)
    return GammaGammaFit(
        params=params,
        log_likelihood=log_likelihood(params, x, m, w),
        customers=round(float(w.sum())),
        frequency_value_correlation=_correlation(x, m, w),
    )


def expected_order_value(
    params: GammaGammaParams, frequency: npt.ArrayLike, monetary: npt.ArrayLike
) -> FloatArray:
    """Each customer's expected order value given x and m_x: between their own average and
    the population mean, nearer their own the more orders they have. Customers without
    repeat orders, or with a missing (NaN) or non-positive average, get the population mean
    p γ / (q − 1). Raises ValueError if q ≤ 1."""
    _check_params(params)
    if params.q <= 1.0:
        raise ValueError(f"q = {params.q:.4g} ≤ 1: the mean order value does not exist")
    x, m, usable = _data(frequency, monetary)
    x_used = np.where(usable, x, 0.0)
    spend = np.where(usable, x * np.where(usable, m, 0.0), 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return np.asarray(p * (gamma + spend) / (p * x_used + q - 1.0), dtype=np.float64)


def simulate(
    params: GammaGammaParams, frequency: npt.ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Draws each customer's average order value over ``frequency`` orders from the model
    (NaN for customers with no orders)."""
    _check_params(params)
    x = vector_of("frequency", frequency, non_negative=True)
    rate = rng.gamma(params.q, 1.0 / params.gamma, x.size)
    # The sum of x Gamma(p, ν) values is Gamma(p x, ν).
    total = rng.gamma(params.p * np.maximum(x, 1.0), 1.0 / rate)
    return np.where(x > 0, total / np.maximum(x, 1.0), np.nan)
