"""Two groups of recipients compared: conversion rate and revenue per recipient.

- Conversion-rate uplift (treated − control, absolute) with Newcombe's hybrid score interval
  (method 10 in Newcombe 1998: Wilson intervals of each rate, combined), which keeps close
  to its nominal 95% coverage even for small groups and rates near 0, where the simple Wald
  interval does not. The Wilson intervals come from ``scipy.stats.binomtest``.
- Revenue-per-recipient uplift with Welch's t interval (unequal variances), from the groups'
  sums and sums of squares, with the t quantile from scipy.
- The minimum detectable effect (80% power, two-sided 5%) says how large an uplift these
  group sizes could have shown.

A comparison is "too small to conclude" when a group has fewer recipients than the
configured minimum or both groups together have fewer than 10 conversions; else the uplift
is significant when its interval excludes zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
MIN_CONVERSIONS = 10

Verdict = Literal["too_small", "uplift", "drop", "no_difference"]


@dataclass(frozen=True)
class Group:
    """One group's totals: recipients, converted recipients, revenue and its sum of squares
    (revenue per recipient)."""

    recipients: int
    conversions: int
    revenue: float
    revenue_sq: float

    @property
    def rate(self) -> float:
        return self.conversions / self.recipients if self.recipients else math.nan

    @property
    def revenue_per_recipient(self) -> float:
        return self.revenue / self.recipients if self.recipients else math.nan

    @property
    def revenue_variance(self) -> float:
        n = self.recipients
        if n < 2:
            return math.nan
        return max(0.0, (self.revenue_sq - self.revenue * self.revenue / n) / (n - 1))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Comparison:
    treated: Group
    control: Group
    rate_uplift: Interval
    revenue_uplift: Interval
    detectable_rate: float  # minimum detectable absolute uplift in conversion rate
    verdict: Verdict
    statement: str


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    result = stats.binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(result.low), float(result.high)


def rate_difference(treated: Group, control: Group, confidence: float = CONFIDENCE) -> Interval:
    """Newcombe's hybrid score interval for ``treated.rate − control.rate``."""
    p1, p2 = treated.rate, control.rate
    if not treated.recipients or not control.recipients:
        return Interval(math.nan, math.nan, math.nan)
    l1, u1 = wilson(treated.conversions, treated.recipients, confidence)
    l2, u2 = wilson(control.conversions, control.recipients, confidence)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(diff, low, high)


def mean_difference(treated: Group, control: Group, confidence: float = CONFIDENCE) -> Interval:
    """Welch's interval for the difference in revenue per recipient."""
    n1, n2 = treated.recipients, control.recipients
    diff = treated.revenue_per_recipient - control.revenue_per_recipient
    if n1 < 2 or n2 < 2:
        return Interval(diff, math.nan, math.nan)
    a, b = treated.revenue_variance / n1, control.revenue_variance / n2
    se = math.sqrt(a + b)
    if se == 0:
        return Interval(diff, diff, diff)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(diff, diff - half, diff + half)


def detectable_rate_uplift(treated: Group, control: Group) -> float:
    """The smallest absolute uplift these sizes detect with 80% power at 5% (two-sided)."""
    n1, n2 = treated.recipients, control.recipients
    if not n1 or not n2:
        return math.nan
    pooled = (treated.conversions + control.conversions) / (n1 + n2)
    p = min(max(pooled, 0.01), 0.99)  # no conversions yet: assume a 1% base rate
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2) + stats.norm.ppf(POWER))
    return z * math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def _points(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def compare(
    treated: Group,
    control: Group,
    *,
    min_group_size: int,
    treated_label: str = "treated",
    control_label: str = "holdout",
) -> Comparison:
    """Compare two groups and say plainly what the numbers allow one to conclude."""
    rate = rate_difference(treated, control)
    revenue = mean_difference(treated, control)
    mde = detectable_rate_uplift(treated, control)
    smallest = min(treated.recipients, control.recipients)
    conversions = treated.conversions + control.conversions
    verdict: Verdict
    if smallest < min_group_size or conversions < MIN_CONVERSIONS:
        verdict = "too_small"
        need = []
        if smallest < min_group_size:
            need.append(f"at least {min_group_size} recipients in each group")
        if conversions < MIN_CONVERSIONS:
            need.append(f"at least {MIN_CONVERSIONS} conversions in all")
        detect = (
            ""
            if math.isnan(mde)
            else f"; at this size only an uplift beyond ±{100 * mde:.1f} pp could show"
        )
        statement = (
            f"Too small to conclude: {treated.recipients} {treated_label} and "
            f"{control.recipients} {control_label} recipients with {conversions} conversions "
            f"(needs {' and '.join(need)}{detect})."
        )
    elif rate.excludes_zero:
        verdict = "uplift" if rate.estimate > 0 else "drop"
        word = "higher" if rate.estimate > 0 else "lower"
        statement = (
            f"Conversion is {word} for {treated_label} than for {control_label}: "
            f"{_points(rate.estimate)} (95% CI {_points(rate.low)} to {_points(rate.high)})."
        )
    else:
        verdict = "no_difference"
        statement = (
            f"No significant difference between {treated_label} and {control_label}: "
            f"{_points(rate.estimate)} (95% CI {_points(rate.low)} to {_points(rate.high)}); "
            f"an uplift of about ±{100 * mde:.1f} pp would have shown."
        )
    return Comparison(treated, control, rate, revenue, mde, verdict, statement)
