"""The BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting Your Customers
the Easy Way: An Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284).

A customer is described by ``x`` (the number of repeat purchases), ``t_x`` (the time of the
last purchase, counted from the first one) and ``T`` (the time from the first purchase to
the end of the observation). While active, a customer buys at the times of a Poisson process
of rate λ ~ Gamma(r, α); after each repeat purchase they drop out for good with probability
p ~ Beta(a, b). The first purchase never ends activity.

Formulas, with B the beta function:

- Likelihood of one customer (eq. 6)::

      L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
          + [x > 0] B(a+1, b+x-1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))

  computed as log L = ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
  − (r+x) ln(α+T) + [x > 0] softplus(u), where
  u = ln(a / (b+x−1)) + (r+x) (ln(α+T) − ln(α+t_x)) and softplus(u) = ln(1 + e^u).
- Probability of being alive at T (eq. 13 of the technical note to the paper):
  P(alive) = 1 / (1 + [x > 0] e^u), which is 1 for x = 0.
- Expected purchases in (0, t] of a new customer (eq. 9)::

      E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]

- Expected purchases in (T, T+t] of a customer with history (x, t_x, T) (eq. 10)::

      E[Y(t) | x, t_x, T] = (a+b+x−1)/(a−1)
          · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)] · P(alive),
      z = t/(α+T+t)

  The product (1−z)^(r+x) ₂F₁(r+x, b+x; c; z), c = a+b+x−1, is evaluated after Euler's
  transformation ₂F₁(A, B; c; z) = (1−z)^(c−A−B) ₂F₁(c−A, c−B; c; z), i.e. as
  (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; c; z): the terms no longer grow with x and the factor that
  diverges as z → 1 cancels analytically. Eq. 9 is eq. 10 with x = t_x = T = 0. At a = 1 the
  formulas are 0/0; within 5e−4 of it they are interpolated by the cubic in a through their
  values at a = 1 ± 5e−4 and 1 ± 1.5e−3.

Parameters are estimated by maximum likelihood over their logarithms (L-BFGS-B with the
analytic gradient). Times are divided by the mean age first, which makes the fit independent
of the time unit: fitting in days gives α in days, 7 times α in weeks, the same r, a, b, and
a log-likelihood lower by ln(7)·Σx (the likelihood is a density in t_x). Identical rows
(x, t_x, T) are merged into one row with a weight, and the terms that depend only on x or
only on T are computed once per distinct value.
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
IntArray = npt.NDArray[np.int64]

# Rows are merged by one integer key when the product of the numbers of distinct x, t_x and
# T values stays below this (else they are not merged).
_KEY_LIMIT = 2**62
# Eqs. 9 and 10 are 0/0 at a = 1: within _A_NEAR_ONE of it they are interpolated (cubic)
# through their values at a = 1 + _A_NODES.
_A_NEAR_ONE = 5e-4
_A_NODES = (-1.5e-3, -5e-4, 5e-4, 1.5e-3)


@dataclass(frozen=True)
class BgNbdParams:
    """Gamma(r, α) purchase rates (α in the time unit of the data) and Beta(a, b) dropout
    probabilities."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class BgNbdFit:
    """Maximum-likelihood parameters, the log-likelihood there, and the number of customers
    fitted (weights summed)."""

    params: BgNbdParams
    log_likelihood: float
    customers: int


def _histories(
    frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The customers' (x, t_x, T) as float arrays of one shape, checked."""
    x = vector_of("frequency", frequency, non_negative=True)
    t_x = vector_of("recency", recency, non_negative=True)
    ages = vector_of("age", age, non_negative=True)
    if not x.shape == t_x.shape == ages.shape:
        raise ValueError(
            f"frequency, recency and age differ in length: {x.size}, {t_x.size}, {ages.size}"
        )
    if np.any(t_x > ages):
        raise ValueError("recency (time of the last purchase) must not exceed age")
    return x, t_x, ages


def _check_params(params: BgNbdParams) -> None:
    values = (params.r, params.alpha, params.a, params.b)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"BG/NBD parameters must be positive and finite, got {params}")


def _log_likelihoods(
    params: BgNbdParams,
    x: FloatArray,
    t_x: FloatArray,
    ages: FloatArray,
) -> FloatArray:
    """Each customer's log-likelihood (eq. 6)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_t = np.log(alpha + ages)
    repeat = x > 0
    # ln(b + x − 1) only matters for x > 0; max(x, 1) keeps the logarithm defined for x = 0.
    u = np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) + (r + x) * (log_t - np.log(alpha + t_x))
    dropout_term = np.where(repeat, np.logaddexp(0.0, u), 0.0)
    ll = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.betaln(a, b + x)
        - special.betaln(a, b)
        - (r + x) * log_t
        + dropout_term
    )
    return np.asarray(ll, dtype=np.float64)


def log_likelihood(
    params: BgNbdParams,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
) -> float:
    """The total log-likelihood of the customers' histories under ``params``."""
    _check_params(params)
    x, t_x, ages = _histories(frequency, recency, age)
    w = weights_of(weights, x.size)
    return float(np.dot(w, _log_likelihoods(params, x, t_x, ages)))


@dataclass(frozen=True)
class _Compressed:
    """Distinct (x, t_x, T) rows with their weights, as indices into the distinct values of
    each column (the objective computes per-value terms once)."""

    x_values: FloatArray
    t_values: FloatArray
    age_values: FloatArray
    x_index: IntArray
    t_index: IntArray
    age_index: IntArray
    weight: FloatArray


def _compress(x: FloatArray, t_x: FloatArray, ages: FloatArray, w: FloatArray) -> _Compressed:
    x_values, x_index = np.unique(x, return_inverse=True)
    t_values, t_index = np.unique(t_x, return_inverse=True)
    age_values, age_index = np.unique(ages, return_inverse=True)
    nt, na = t_values.size, age_values.size
    if x_values.size * nt * na >= _KEY_LIMIT:
        # too many distinct values for one int64 key: the rows are fitted as they are
        return _Compressed(x_values, t_values, age_values, x_index, t_index, age_index, w)
    key = (x_index.astype(np.int64) * nt + t_index) * na + age_index
    distinct, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=w, minlength=distinct.size).astype(np.float64)
    return _Compressed(
        x_values,
        t_values,
        age_values,
        distinct // (nt * na),
        (distinct // na) % nt,
        distinct % na,
        weight,
    )


class _Objective:
    """Minus the mean log-likelihood per customer and its gradient, as a function of the
    log-parameters, over compressed data whose times are already divided by the scale."""

    def __init__(self, data: _Compressed) -> None:
        w = data.weight
        self.total = float(w.sum())
        self.x = data.x_values
        nx, na = data.x_values.size, data.age_values.size
        self.weight_x = np.bincount(data.x_index, weights=w, minlength=nx)
        self.age = data.age_values
        self.weight_age = np.bincount(data.age_index, weights=w, minlength=na)
        self.xweight_age = np.bincount(
            data.age_index, weights=w * data.x_values[data.x_index], minlength=na
        )
        self.t = data.t_values
        # Rows with repeat purchases: only they have the dropout term.
        repeat = data.x_values[data.x_index] > 0
        self.rep_x_index = data.x_index[repeat]
        self.rep_x = data.x_values[self.rep_x_index]
        self.rep_t_index = data.t_index[repeat]
        self.rep_age_index = data.age_index[repeat]
        self.rep_weight = w[repeat]
        self.x_repeat = self.x > 0

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(theta)
        x, wx = self.x, self.weight_x
        # Terms that depend on x only.
        ll = float(
            np.dot(
                wx,
                special.gammaln(r + x)
                - special.gammaln(r)
                + special.betaln(a, b + x)
                - special.betaln(a, b),
            )
        )
        ll += self.total * r * np.log(alpha)
        d_r = float(np.dot(wx, special.digamma(r + x) - special.digamma(r)))
        d_r += self.total * np.log(alpha)
        d_alpha = self.total * r / alpha
        psi_ab, psi_abx = special.digamma(a + b), special.digamma(a + b + x)
        d_a = float(np.dot(wx, psi_ab - psi_abx))
        d_b = float(np.dot(wx, special.digamma(b + x) - psi_abx - special.digamma(b) + psi_ab))
        # −(r + x) ln(α + T), summed per distinct T.
        log_age = np.log(alpha + self.age)
        inv_age = 1.0 / (alpha + self.age)
        ll -= float(np.dot(log_age, r * self.weight_age + self.xweight_age))
        d_r -= float(np.dot(log_age, self.weight_age))
        d_alpha -= float(np.dot(inv_age, r * self.weight_age + self.xweight_age))
        # The dropout term softplus(u) of customers with x > 0.
        log_t = np.log(alpha + self.t)
        inv_t = 1.0 / (alpha + self.t)
        x_term = np.log(a) - np.log(b + np.where(self.x_repeat, x, 1.0) - 1.0)
        age_index, t_index = self.rep_age_index, self.rep_t_index
        log_ratio = log_age[age_index]
        log_ratio -= log_t[t_index]
        rx = r + self.rep_x
        u = rx * log_ratio
        u += x_term[self.rep_x_index]
        w = self.rep_weight
        # softplus(u) = −ln σ(−u); its derivative in u is σ(u).
        ll -= float(np.dot(w, special.log_expit(-u)))
        ws = special.expit(u)
        ws *= w
        d_r += float(np.dot(ws, log_ratio))
        inv_diff = inv_age[age_index]
        inv_diff -= inv_t[t_index]
        inv_diff *= rx
        d_alpha += float(np.dot(ws, inv_diff))
        ws_x = np.bincount(self.rep_x_index, weights=ws, minlength=x.size)
        d_a += float(ws_x.sum()) / a
        d_b -= float(np.dot(ws_x[self.x_repeat], 1.0 / (b + x[self.x_repeat] - 1.0)))
        gradient = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b]) / -self.total
        return -ll / self.total, gradient


def _start(data: _Compressed) -> FloatArray:
    """Starting log-parameters (times in units of the mean age): r = 1, α from the NBD mean
    E[x] = r T / α, and a = 1, b = 3."""
    w = data.weight
    mean_x = float(np.dot(w, data.x_values[data.x_index])) / float(w.sum())
    alpha = 1.0 / max(mean_x, 0.05)
    return np.log(np.array([1.0, alpha, 1.0, 3.0], dtype=np.float64))


def fit_bgnbd(
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
) -> BgNbdFit:
    """Fits the BG/NBD model by maximum likelihood to the customers' (x, t_x, T); ``weights``
    counts identical customers. Frequencies are whole numbers, and a customer with x > 0 has
    t_x > 0 (purchases of one day, or time unit, count as one). Raises ValueError on invalid
    data, data without repeat purchases, or a fit that does not converge or runs off to a
    parameter of 0 or infinity (the data do not identify the model)."""
    x, t_x, ages = _histories(frequency, recency, age)
    w = weights_of(weights, x.size)
    if x.size == 0 or w.sum() == 0:
        raise ValueError("no customers to fit the BG/NBD model to")
    if np.any(x != np.round(x)):
        raise ValueError("frequency must be whole numbers (counts of repeat purchases)")
    keep = w > 0
    x, t_x, ages, w = x[keep], t_x[keep], ages[keep], w[keep]
    if not np.any(x > 0):
        raise ValueError("no customer has a repeat purchase: the BG/NBD model cannot be fitted")
    if np.any((x > 0) & (t_x == 0)):
        # Such a customer's likelihood term grows without bound as α → 0.
        raise ValueError(
            "a customer with repeat purchases has recency 0: in the BG/NBD model a repeat "
            "purchase comes after the first; count the purchases of one day (or time unit) "
            "as one transaction"
        )
    scale = float(np.dot(w, ages) / w.sum())
    if scale <= 0:
        raise ValueError("every customer has age 0: the BG/NBD model cannot be fitted")
    data = _compress(x, t_x / scale, ages / scale, w)
    objective = _Objective(data)
    bounds = [(-LOG_BOUND, LOG_BOUND)] * 4
    result = optimize.minimize(
        objective,
        _start(data),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    theta = estimate(result, objective, "BG/NBD", ("r", "α", "a", "b"))
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    params = BgNbdParams(r=r, alpha=alpha * scale, a=a, b=b)
    ll = log_likelihood(
        params,
        data.x_values[data.x_index],
        data.t_values[data.t_index] * scale,
        data.age_values[data.age_index] * scale,
        data.weight,
    )
    return BgNbdFit(params=params, log_likelihood=ll, customers=round(float(w.sum())))


def p_alive(
    params: BgNbdParams, frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> FloatArray:
    """Each customer's probability of being active at the end of the observation (1 for
    customers without repeat purchases)."""
    _check_params(params)
    x, t_x, ages = _histories(frequency, recency, age)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    u = np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0)
    u = u + (r + x) * (np.log(alpha + ages) - np.log(alpha + t_x))
    return np.asarray(np.where(x > 0, special.expit(-u), 1.0), dtype=np.float64)


def _future_purchases_if_alive(
    r: float,
    alpha: float,
    a: float,
    b: float,
    horizon: FloatArray,
    x: FloatArray,
    ages: FloatArray,
) -> FloatArray:
    """(a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z)], the expected
    purchases in (T, T+t] of a customer alive at T, for a ≠ 1."""
    c = a + b + x - 1.0
    z = horizon / (alpha + ages + horizon)
    log_one_minus_z = np.log(alpha + ages) - np.log(alpha + ages + horizon)
    hyp = special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    return c / (a - 1.0) * (1.0 - np.exp((a - 1.0) * log_one_minus_z) * hyp)


def _expected_if_alive(
    params: BgNbdParams,
    horizon: FloatArray,
    x: FloatArray,
    ages: FloatArray,
) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) >= _A_NEAR_ONE:
        return _future_purchases_if_alive(r, alpha, a, b, horizon, x, ages)
    # Lagrange interpolation in a (the function is smooth in a).
    result = np.zeros(np.broadcast_shapes(horizon.shape, x.shape, ages.shape))
    for i, node in enumerate(_A_NODES):
        weight = 1.0
        for j, other in enumerate(_A_NODES):
            if j != i:
                weight *= (a - 1.0 - other) / (node - other)
        result += weight * _future_purchases_if_alive(r, alpha, 1.0 + node, b, horizon, x, ages)
    return result


def expected_orders(
    params: BgNbdParams,
    horizon: npt.ArrayLike,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
) -> FloatArray:
    """Each customer's expected number of purchases in (T, T + horizon] given their history
    (eq. 10); ``horizon`` is in the time unit of the data (a number, or one per customer)."""
    x, t_x, ages = _histories(frequency, recency, age)
    t = vector_of("horizon", horizon, non_negative=True)
    t, x, t_x, ages = np.broadcast_arrays(t, x, t_x, ages)
    alive = p_alive(params, x, t_x, ages)
    return np.asarray(_expected_if_alive(params, t, x, ages) * alive, dtype=np.float64)


def expected_orders_new(params: BgNbdParams, t: npt.ArrayLike) -> FloatArray | float:
    """Expected number of repeat purchases of a new customer in their first ``t`` time units
    (eq. 9); a float for a number, an array for an array."""
    _check_params(params)
    horizon = np.asarray(t, dtype=np.float64)
    times = vector_of("t", horizon, non_negative=True)
    zeros = np.zeros_like(times)
    values = _expected_if_alive(params, times, zeros, zeros)
    if horizon.ndim == 0:
        return float(values[0])
    return np.asarray(values, dtype=np.float64)


def simulate(
    params: BgNbdParams, customers: int, age: npt.ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draws ``customers`` histories from the model: their frequency and recency, given their
    ages (one number, or one per customer). The dropout probability is kept at 1e−15 or
    more, so that draws of p that round to 0 stay valid."""
    _check_params(params)
    if customers < 0:
        raise ValueError("customers must not be negative")
    ages = np.broadcast_to(vector_of("age", age, non_negative=True), (customers,))
    rate = rng.gamma(params.r, 1.0 / params.alpha, customers)
    dropout = np.clip(rng.beta(params.a, params.b, customers), 1e-15, 1.0)
    # Purchases until T if nobody dropped out, and the repeat purchase after which the
    # customer drops out (geometric: dropout follows each repeat purchase with probability p).
    arrivals = rng.poisson(rate * ages)
    last = rng.geometric(dropout)
    x = np.minimum(arrivals, last)
    # Given n arrivals in (0, T], the x-th arrival time is T times a Beta(x, n−x+1) draw.
    t_x = np.where(x > 0, ages * rng.beta(np.maximum(x, 1), arrivals - x + 1), 0.0)
    return x.astype(np.float64), t_x
