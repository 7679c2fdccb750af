"""The statistics: published values for Newcombe's interval, Welch's interval against scipy
on the raw data, coverage and false-positive rates over many seeds, and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from clvflow.measurement.stats import (
    Group,
    compare,
    detectable_rate_uplift,
    mean_difference,
    rate_difference,
)


def _group(revenue: np.ndarray) -> Group:
    return Group(
        recipients=len(revenue),
        conversions=int((revenue > 0).sum()),
        revenue=float(revenue.sum()),
        revenue_sq=float((revenue**2).sum()),
    )


@pytest.mark.parametrize(
    ("a", "n", "b", "m", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
    ],
)
def test_newcombe_interval_matches_the_published_table(
    a: int, n: int, b: int, m: int, low: float, high: float
) -> None:
    got = rate_difference(Group(n, a, 0, 0), Group(m, b, 0, 0))
    assert got.estimate == pytest.approx(a / n - b / m)
    assert (round(got.low, 4), round(got.high, 4)) == (low, high)


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval in closed form (independent of scipy's binomtest)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("a", "n", "b", "m"), [(6, 7, 2, 7), (5, 56, 0, 29), (0, 10, 0, 20), (10, 10, 0, 20)]
)
def test_newcombe_interval_matches_a_closed_form_reading(a: int, n: int, b: int, m: int) -> None:
    l1, u1 = _wilson(a, n)
    l2, u2 = _wilson(b, m)
    p1, p2 = a / n, b / m
    low = p1 - p2 - ((p1 - l1) ** 2 + (u2 - p2) ** 2) ** 0.5
    high = p1 - p2 + ((u1 - p1) ** 2 + (p2 - l2) ** 2) ** 0.5
    got = rate_difference(Group(n, a, 0, 0), Group(m, b, 0, 0))
    assert got.low == pytest.approx(low, abs=1e-12) and got.high == pytest.approx(high, abs=1e-12)


def test_welch_interval_from_sums_matches_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(3)
    treated = np.where(rng.random(800) < 0.2, rng.lognormal(4, 0.6, 800), 0.0)
    control = np.where(rng.random(500) < 0.1, rng.lognormal(4, 0.6, 500), 0.0)
    ours = mean_difference(_group(treated), _group(control))
    reference = stats.ttest_ind(treated, control, equal_var=False).confidence_interval(0.95)
    assert ours.estimate == pytest.approx(treated.mean() - control.mean())
    assert ours.low == pytest.approx(reference.low, rel=1e-9)
    assert ours.high == pytest.approx(reference.high, rel=1e-9)


def test_interval_covers_the_true_uplift_in_about_95_percent_of_seeds() -> None:
    p_treated, p_control, n = 0.12, 0.08, 1500
    covered = 0
    seeds = range(400)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        t = Group(n, int(rng.binomial(n, p_treated)), 0, 0)
        c = Group(n, int(rng.binomial(n, p_control)), 0, 0)
        ci = rate_difference(t, c)
        covered += ci.low <= p_treated - p_control <= ci.high
    assert 0.92 <= covered / len(seeds) <= 0.98


def test_a_a_comparisons_are_significant_in_about_5_percent_of_seeds() -> None:
    significant = 0
    seeds = range(1000)
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        a = Group(900, int(rng.binomial(900, 0.06)), 0, 0)
        b = Group(700, int(rng.binomial(700, 0.06)), 0, 0)
        result = compare(a, b, min_group_size=100)
        assert result.verdict != "too_small"
        significant += result.verdict in ("uplift", "drop")
    assert significant / len(seeds) <= 0.065


def test_verdicts_say_what_the_numbers_allow() -> None:
    big = compare(Group(2000, 300, 0, 0), Group(2000, 200, 0, 0), min_group_size=100)
    assert big.verdict == "uplift"
    assert big.statement.startswith("Conversion is higher for treated than for holdout: +5.0 pp")
    drop = compare(Group(2000, 200, 0, 0), Group(2000, 300, 0, 0), min_group_size=100)
    assert drop.verdict == "drop" and "lower" in drop.statement
    same = compare(Group(2000, 210, 0, 0), Group(2000, 200, 0, 0), min_group_size=100)
    assert same.verdict == "no_difference"
    assert same.statement.startswith("No significant difference")
    small = compare(Group(150, 40, 0, 0), Group(12, 1, 0, 0), min_group_size=100)
    assert small.verdict == "too_small"
    assert small.statement.startswith("Too small to conclude: 150 treated and 12 holdout")
    assert "at least 100 recipients in each group" in small.statement
    few = compare(Group(500, 3, 0, 0), Group(500, 2, 0, 0), min_group_size=100)
    assert few.verdict == "too_small" and "at least 10 conversions" in few.statement


def test_detectable_uplift_shrinks_with_the_square_root_of_the_size() -> None:
    small = detectable_rate_uplift(Group(400, 40, 0, 0), Group(400, 40, 0, 0))
    large = detectable_rate_uplift(Group(1600, 160, 0, 0), Group(1600, 160, 0, 0))
    # (1.95996 + 0.84162) · sqrt(0.1 · 0.9 · 2/400)
    assert small == pytest.approx(2.80158 * (0.09 * 2 / 400) ** 0.5, rel=1e-4)
    assert large == pytest.approx(small / 2)


def test_empty_groups_give_no_interval() -> None:
    result = rate_difference(Group(0, 0, 0, 0), Group(10, 1, 0, 0))
    assert np.isnan(result.low) and np.isnan(result.estimate)
    assert np.isnan(mean_difference(Group(1, 1, 5, 25), Group(10, 1, 5, 25)).low)
