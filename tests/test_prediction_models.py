"""The BG/NBD and Gamma-Gamma models: the published CDNOW estimates, parameter recovery from
simulated data, and the predictions checked against independent computations (numerical
integration of the model, Monte-Carlo draws from the posterior)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import integrate, special

from clvflow.predictions import bgnbd, gamma_gamma
from clvflow.predictions.bgnbd import BgNbdParams
from clvflow.predictions.gamma_gamma import GammaGammaParams

CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CALIBRATION_START = pd.Timestamp("1997-01-01")
CALIBRATION_END = pd.Timestamp("1997-09-30")

# Parameters near the CDNOW estimates (time in weeks).
PARAMS = BgNbdParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
SPEND = GammaGammaParams(p=6.0, q=3.7, gamma=15.0)


def three_digits(value: float) -> str:
    return f"{value:.3g}"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """The CDNOW sample's calibration summary (1997-01-01 to 1997-09-30), one row per
    customer: purchases on one day count as one transaction of their summed value."""
    orders = pd.read_csv(
        CDNOW,
        sep=r"\s+",
        header=None,
        names=["index", "customer", "date", "cds", "value"],
        dtype={"date": str},
    )
    orders["date"] = pd.to_datetime(orders["date"], format="%Y%m%d")
    window = orders[(orders["date"] >= CALIBRATION_START) & (orders["date"] <= CALIBRATION_END)]
    days = window.groupby(["customer", "date"], as_index=False)["value"].sum()
    dates = days.groupby("customer")["date"]
    first, last = dates.min(), dates.max()
    repeat = days[days["date"] > days["customer"].map(first)]
    return pd.DataFrame(
        {
            "frequency": (dates.size() - 1).astype(float),
            "recency_days": (last - first).dt.days.astype(float),
            "age_days": (CALIBRATION_END - first).dt.days.astype(float),
            "monetary": repeat.groupby("customer")["value"].mean(),
        }
    )


def test_cdnow_summary_has_the_papers_counts(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 2357
    assert int(cdnow["frequency"].sum()) == 2457
    assert int((cdnow["frequency"] > 0).sum()) == 946
    assert cdnow["monetary"].notna().sum() == 946
    assert cdnow["age_days"].max() == 272  # a customer since 1 January: T = 38.86 weeks


def test_cdnow_bgnbd_matches_the_paper(cdnow: pd.DataFrame) -> None:
    fit = bgnbd.fit_bgnbd(cdnow["frequency"], cdnow["recency_days"] / 7, cdnow["age_days"] / 7)
    p = fit.params
    # Fader, Hardie & Lee (2005), table 1: r = 0.243, α = 4.414, a = 0.793, b = 2.426,
    # LL = −9582.4.
    assert (three_digits(p.r), three_digits(p.alpha)) == ("0.243", "4.41")
    assert (three_digits(p.a), three_digits(p.b)) == ("0.793", "2.43")
    assert f"{p.alpha:.4g}" == "4.414" and f"{p.b:.4g}" == "2.426"
    assert round(fit.log_likelihood, 1) == -9582.4
    assert fit.customers == 2357
    assert fit.log_likelihood == pytest.approx(
        bgnbd.log_likelihood(
            p, cdnow["frequency"], cdnow["recency_days"] / 7, cdnow["age_days"] / 7
        ),
        abs=1e-8,
    )


def test_cdnow_bgnbd_in_days_is_the_fit_in_weeks_rescaled(cdnow: pd.DataFrame) -> None:
    x = cdnow["frequency"]
    weeks = bgnbd.fit_bgnbd(x, cdnow["recency_days"] / 7, cdnow["age_days"] / 7)
    days = bgnbd.fit_bgnbd(x, cdnow["recency_days"], cdnow["age_days"])
    assert days.params.alpha == pytest.approx(7 * weeks.params.alpha, rel=1e-6)
    assert days.params.r == pytest.approx(weeks.params.r, rel=1e-6)
    assert days.params.a == pytest.approx(weeks.params.a, rel=1e-6)
    assert days.params.b == pytest.approx(weeks.params.b, rel=1e-6)
    # The likelihood is a density in t_x: a 7 times longer unit adds ln 7 per purchase.
    assert days.log_likelihood == pytest.approx(
        weeks.log_likelihood - math.log(7) * float(x.sum()), abs=1e-6
    )


def test_cdnow_fit_is_a_maximum(cdnow: pd.DataFrame) -> None:
    data = (cdnow["frequency"], cdnow["recency_days"] / 7, cdnow["age_days"] / 7)
    fit = bgnbd.fit_bgnbd(*data)
    best = np.array([fit.params.r, fit.params.alpha, fit.params.a, fit.params.b])
    for i in range(4):
        for step in (0.99, 1.01):
            moved = best.copy()
            moved[i] *= step
            assert bgnbd.log_likelihood(BgNbdParams(*moved), *data) < fit.log_likelihood


def test_weights_give_the_fit_of_the_repeated_rows(cdnow: pd.DataFrame) -> None:
    columns = ["frequency", "recency_days", "age_days"]
    full = bgnbd.fit_bgnbd(*(cdnow[c] for c in columns))
    counts = cdnow.groupby(columns).size().reset_index(name="n")
    assert len(counts) < len(cdnow) / 2
    compressed = bgnbd.fit_bgnbd(*(counts[c] for c in columns), weights=counts["n"])
    assert compressed.customers == full.customers == 2357
    assert compressed.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-6)
    assert compressed.params.alpha == pytest.approx(full.params.alpha, rel=1e-6)
    assert compressed.params.b == pytest.approx(full.params.b, rel=1e-6)


def test_cdnow_gamma_gamma_matches_the_published_values(cdnow: pd.DataFrame) -> None:
    fit = gamma_gamma.fit_gamma_gamma(cdnow["frequency"], cdnow["monetary"])
    p = fit.params
    # Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013): p = 6.25,
    # q = 3.74, γ = 15.44 (lifetimes reports 15.45) on the 946 repeat buyers.
    assert fit.customers == 946
    assert (three_digits(p.p), three_digits(p.q)) == ("6.25", "3.74")
    assert f"{p.gamma:.4g}" in {"15.44", "15.45"}
    repeat = cdnow[cdnow["frequency"] > 0]
    assert fit.frequency_value_correlation == pytest.approx(
        repeat["frequency"].corr(repeat["monetary"]), abs=1e-12
    )
    assert round(fit.frequency_value_correlation, 2) == 0.11
    # The same with weights: each row twice.
    doubled = gamma_gamma.fit_gamma_gamma(
        repeat["frequency"], repeat["monetary"], weights=np.full(len(repeat), 2)
    )
    assert doubled.customers == 2 * 946
    assert doubled.params.q == pytest.approx(p.q, rel=1e-6)
    assert doubled.log_likelihood == pytest.approx(2 * fit.log_likelihood, rel=1e-9)


def log_param_standard_errors(
    log_likelihood: Callable[[npt.NDArray[np.float64]], float],
    theta: npt.NDArray[np.float64],
    step: float = 1e-4,
) -> npt.NDArray[np.float64]:
    """Standard errors of the log-parameters from the numerical Hessian at the estimate."""
    k = theta.size
    hessian = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):

            def at(di: float, dj: float, i: int = i, j: int = j) -> float:
                moved = theta.copy()
                moved[i] += di
                moved[j] += dj
                return log_likelihood(moved)

            hessian[i, j] = hessian[j, i] = (
                at(step, step) - at(step, -step) - at(-step, step) + at(-step, -step)
            ) / (4 * step * step)
    return np.sqrt(np.diag(np.linalg.inv(-hessian)))


def test_bgnbd_recovers_simulated_parameters() -> None:
    # Over 40 seeds offline the errors divided by these standard errors had standard
    # deviations 0.87-1.23 and at most 3.2 in absolute value: 4 standard errors.
    rng = np.random.default_rng(2024)
    ages = rng.uniform(1, 78, 20_000)
    x, t_x = bgnbd.simulate(PARAMS, ages.size, ages, rng)
    fit = bgnbd.fit_bgnbd(x, t_x, ages)
    estimate = np.log([fit.params.r, fit.params.alpha, fit.params.a, fit.params.b])
    truth = np.log([PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b])
    errors = log_param_standard_errors(
        lambda theta: bgnbd.log_likelihood(BgNbdParams(*np.exp(theta)), x, t_x, ages), estimate
    )
    assert np.all(errors < 0.12)  # each parameter within about 12% per standard error
    assert np.all(np.abs(estimate - truth) < 4 * errors), (estimate - truth) / errors


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    # Over 40 seeds (5,000 customers) offline: standard deviations 1.05-1.19 of the
    # standardised errors, at most 3.2 in absolute value: 4 standard errors.
    rng = np.random.default_rng(7)
    x = rng.integers(1, 11, 20_000).astype(float)
    m = gamma_gamma.simulate(SPEND, x, rng)
    fit = gamma_gamma.fit_gamma_gamma(x, m)
    estimate = np.log([fit.params.p, fit.params.q, fit.params.gamma])
    truth = np.log([SPEND.p, SPEND.q, SPEND.gamma])
    errors = log_param_standard_errors(
        lambda theta: gamma_gamma.log_likelihood(GammaGammaParams(*np.exp(theta)), x, m),
        estimate,
    )
    assert np.all(errors < 0.1)
    assert np.all(np.abs(estimate - truth) < 4 * errors), (estimate - truth) / errors
    assert abs(fit.frequency_value_correlation) < 0.05  # independent in the simulation


def expected_orders_by_integration(
    params: BgNbdParams, t: float, x: float, t_x: float, age: float
) -> float:
    """Eq. 10 without the hypergeometric function: the rate integrated out analytically,
    the dropout probability p numerically. A customer alive at T with (λ, p) buys
    (1 − e^(−λ p t)) / p times in expectation in (T, T+t]."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    c = alpha + age

    def integrand(p: float) -> float:
        if p == 0:
            return (r + x) * t / c
        return float(-np.expm1(-(r + x) * np.log1p(p * t / c)) / p)

    # ∫ p^(a−2) (1−p)^(b+x−1) [1 − (1 + p t/c)^−(r+x)] dp, the weight p^(a−1) (1−p)^(b+x−1)
    # handled by QUADPACK.
    value, _ = integrate.quad(
        integrand, 0, 1, weight="alg", wvar=(a - 1, b + x - 1), epsabs=0, epsrel=1e-12, limit=200
    )
    alive_if_dead = 0.0
    if x > 0:
        log_ratio = math.log(a / (b + x - 1)) + (r + x) * (math.log(c) - math.log(alpha + t_x))
        alive_if_dead = math.exp(log_ratio)
    return float(value / math.exp(special.betaln(a, b + x)) / (1 + alive_if_dead))


PROFILES = [
    # (x, t_x, T, horizon), times in weeks
    (0, 0.0, 30.0, 52.0),
    (1, 2.0, 38.0, 39.0),
    (4, 30.0, 31.0, 26.0),
    (7, 10.0, 39.0, 52.0),
    (60, 50.0, 52.0, 52.0),  # large x: terms of the original series grow like x
    (500, 99.0, 100.0, 10.0),
    (2, 0.5, 0.6, 5000.0),  # z = t / (α + T + t) near 1
    (0, 0.0, 0.0, 1e-4),  # tiny horizon
]


@pytest.mark.parametrize(
    "params",
    [
        PARAMS,
        BgNbdParams(r=2.5, alpha=0.3, a=3.0, b=0.4),  # a > 1
        BgNbdParams(r=0.05, alpha=80.0, a=0.15, b=9.0),
        BgNbdParams(r=0.9, alpha=5.0, a=1.0, b=2.0),  # a = 1: eqs. 9 and 10 are 0/0
        BgNbdParams(r=0.9, alpha=5.0, a=1.0004, b=2.0),
        BgNbdParams(r=0.9, alpha=5.0, a=0.9994, b=2.0),  # computed directly, just outside
    ],
)
def test_expected_orders_agree_with_numerical_integration(params: BgNbdParams) -> None:
    x, t_x, age, horizon = (np.array(column, dtype=float) for column in zip(*PROFILES, strict=True))
    got = bgnbd.expected_orders(params, horizon, x, t_x, age)
    want = [
        expected_orders_by_integration(params, *row)
        for row in zip(horizon, x, t_x, age, strict=True)
    ]
    assert got == pytest.approx(want, rel=1e-7)
    assert np.all(got > 0)


def posterior_draws(
    params: BgNbdParams,
    x: int,
    t_x: float,
    age: float,
    horizon: float,
    n: int,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float64], float]:
    """Purchases in (T, T+horizon] simulated from the model given the history, by exact
    sampling of the posterior, a mixture of two conjugate parts: alive at T (λ ~
    Gamma(r+x, α+T), p ~ Beta(a, b+x)) or dropped out at t_x (λ ~ Gamma(r+x, α+t_x),
    p ~ Beta(a+1, b+x−1)); also the mixture's probability of alive."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_alive = special.betaln(a, b + x) - (r + x) * math.log(alpha + age)
    if x > 0:
        log_dead = special.betaln(a + 1, b + x - 1) - (r + x) * math.log(alpha + t_x)
        share_alive = 1 / (1 + math.exp(log_dead - log_alive))
    else:
        share_alive = 1.0
    alive = rng.random(n) < share_alive
    rate = rng.gamma(r + x, 1 / (alpha + age), n)
    dropout = rng.beta(a, b + x, n)
    # In (T, T+t] an alive customer buys at rate λ until the purchase after which they drop
    # out, the k-th with k ~ Geometric(p).
    purchases = np.minimum(rng.poisson(rate * horizon), rng.geometric(dropout))
    return np.where(alive, purchases, 0).astype(float), share_alive


@pytest.mark.parametrize(
    "profile", [(1, 2.0, 38.0, 39.0), (4, 30.0, 31.0, 26.0), (7, 35.0, 39.0, 52.0)]
)
def test_expected_orders_agree_with_monte_carlo(profile: tuple[int, float, float, float]) -> None:
    x, t_x, age, horizon = profile
    rng = np.random.default_rng(x)
    draws, share_alive = posterior_draws(PARAMS, x, t_x, age, horizon, 1_000_000, rng)
    assert bgnbd.p_alive(PARAMS, [x], [t_x], [age])[0] == pytest.approx(share_alive, rel=1e-12)
    expected = bgnbd.expected_orders(PARAMS, horizon, [x], [t_x], [age])[0]
    standard_error = draws.std() / math.sqrt(draws.size)
    assert standard_error < 0.005 * expected
    assert abs(draws.mean() - expected) < 4 * standard_error


def test_expected_orders_new_customer() -> None:
    horizons = np.array([0.5, 10.0, 52.0, 1000.0])
    new = bgnbd.expected_orders_new(PARAMS, horizons)
    assert isinstance(new, np.ndarray)
    # Eq. 9 is eq. 10 for a customer with no history (x = t_x = T = 0).
    zeros = np.zeros(horizons.size)
    assert new == pytest.approx(
        bgnbd.expected_orders(PARAMS, horizons, zeros, zeros, zeros), rel=1e-12
    )
    want = [expected_orders_by_integration(PARAMS, t, 0, 0, 0) for t in horizons]
    assert new == pytest.approx(want, rel=1e-7)
    assert np.all(np.diff(new) > 0)
    single = bgnbd.expected_orders_new(PARAMS, 52.0)
    assert isinstance(single, float) and single == pytest.approx(new[2], rel=1e-12)
    # At a = 1 (0/0 in the formula) the value is continuous.
    at_one = bgnbd.expected_orders_new(BgNbdParams(PARAMS.r, PARAMS.alpha, 1.0, PARAMS.b), 52.0)
    near = bgnbd.expected_orders_new(BgNbdParams(PARAMS.r, PARAMS.alpha, 1.001, PARAMS.b), 52.0)
    assert isinstance(at_one, float) and at_one == pytest.approx(near, rel=2e-3)


def test_simulated_purchase_counts_follow_the_model() -> None:
    rng = np.random.default_rng(11)
    n, age = 400_000, 52.0
    x, t_x = bgnbd.simulate(PARAMS, n, age, rng)
    expected = bgnbd.expected_orders_new(PARAMS, age)
    assert isinstance(expected, float)
    assert abs(x.mean() - expected) < 4 * x.std() / math.sqrt(n)
    # P(X(t) = 0) = (α / (α + t))^r (eq. 8 at x = 0).
    zero_share = (PARAMS.alpha / (PARAMS.alpha + age)) ** PARAMS.r
    assert abs((x == 0).mean() - zero_share) < 4 * math.sqrt(zero_share * (1 - zero_share) / n)
    assert np.all((t_x >= 0) & (t_x <= age)) and np.all(t_x[x == 0] == 0)


def test_p_alive() -> None:
    recency = np.linspace(0.0, 40.0, 41)
    for x in (1.0, 3.0, 20.0):
        alive = bgnbd.p_alive(
            PARAMS, np.full(recency.size, x), recency, np.full(recency.size, 40.0)
        )
        assert np.all((alive > 0) & (alive <= 1))
        # Longer since the last purchase (T − t_x) at the same x: less likely alive.
        assert np.all(np.diff(alive) > 0)
        later = bgnbd.p_alive(PARAMS, [x] * 3, [10.0] * 3, [20.0, 40.0, 80.0])
        assert np.all(np.diff(later) < 0)
    assert np.all(bgnbd.p_alive(PARAMS, [0, 0], [0, 0], [1.0, 500.0]) == 1.0)
    # At t_x = T the customer has just bought: P(alive) = 1 / (1 + a / (b + x − 1)).
    just = bgnbd.p_alive(PARAMS, [2.0], [30.0], [30.0])[0]
    assert just == pytest.approx(1 / (1 + PARAMS.a / (PARAMS.b + 1)), rel=1e-12)


def test_expected_order_value_shrinks_to_the_population_mean() -> None:
    population = SPEND.p * SPEND.gamma / (SPEND.q - 1)
    x = np.array([1.0, 2.0, 5.0, 20.0, 100.0])
    for own in (5.0, 400.0):
        value = gamma_gamma.expected_order_value(SPEND, x, np.full(x.size, own))
        low, high = sorted((own, population))
        assert np.all((value > low) & (value < high))
        # The more orders, the nearer the customer's own average.
        assert np.all(np.diff(np.abs(value - own)) < 0)
    missing = gamma_gamma.expected_order_value(SPEND, [0.0, 0.0, 3.0], [np.nan, 50.0, np.nan])
    assert missing == pytest.approx([population] * 3, rel=1e-12)


def test_expected_order_value_is_the_conditional_mean() -> None:
    """Simulated customers with 3 orders each: their true mean order value p/ν, minus the
    prediction from their observed average, averages to 0 within each third of averages."""
    rng = np.random.default_rng(5)
    n, x = 400_000, 3.0
    nu = rng.gamma(SPEND.q, 1 / SPEND.gamma, n)
    observed = rng.gamma(SPEND.p * x, 1 / nu) / x
    residual = SPEND.p / nu - gamma_gamma.expected_order_value(SPEND, np.full(n, x), observed)
    for part in np.array_split(residual[np.argsort(observed)], 3):
        assert abs(part.mean()) < 4 * part.std() / math.sqrt(part.size)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bgnbd.fit_bgnbd([], [], []), "no customers"),
        (lambda: bgnbd.fit_bgnbd([1, -1], [1, 0], [2, 2]), "frequency must not be negative"),
        (lambda: bgnbd.fit_bgnbd([1, 1], [3, 0], [2, 2]), "recency"),
        (lambda: bgnbd.fit_bgnbd([1, 1], [1, np.nan], [2, 2]), "finite"),
        (lambda: bgnbd.fit_bgnbd([1, 1], [1, 1], [2, 2, 2]), "differ in length"),
        (lambda: bgnbd.fit_bgnbd([1.5, 1], [1, 1], [2, 2]), "whole numbers"),
        (lambda: bgnbd.fit_bgnbd([1, 1], [1, 1], [2, 2], weights=[1, 0.5]), "whole numbers"),
        (lambda: bgnbd.fit_bgnbd([0, 0, 0], [0, 0, 0], [1, 5, 9]), "no customer has a repeat"),
        (lambda: gamma_gamma.fit_gamma_gamma([2, 0, 3], [10.0, 5.0, 0.0]), "at least 2"),
        (lambda: gamma_gamma.fit_gamma_gamma([2, -1], [10.0, 5.0]), "must not be negative"),
        (lambda: gamma_gamma.fit_gamma_gamma([2, 3], [10.0, np.inf]), "infinite"),
        (lambda: bgnbd.fit_bgnbd([1, 2], [0, 1], [3, 3]), "recency 0"),
        (lambda: bgnbd.fit_bgnbd([1] * 10, [1] * 10, [2] * 10), r"diverged \(r → ∞, α → ∞"),
        (lambda: gamma_gamma.fit_gamma_gamma([3] * 50, [20.0] * 50), r"diverged \(p → ∞"),
    ],
)
def test_invalid_input_is_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_gamma_gamma_refuses_a_population_without_mean() -> None:
    rng = np.random.default_rng(3)
    x = np.full(3000, 3.0)
    heavy = gamma_gamma.simulate(GammaGammaParams(p=4.0, q=0.7, gamma=10.0), x, rng)
    with pytest.raises(ValueError, match=r"q = .* ≤ 1: the population's mean order value"):
        gamma_gamma.fit_gamma_gamma(x, heavy)
    with pytest.raises(ValueError, match="does not exist"):
        gamma_gamma.expected_order_value(GammaGammaParams(4.0, 0.9, 10.0), [1.0], [5.0])
