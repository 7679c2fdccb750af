"""Per campaign: treated against holdout, and each A/B variant against the holdout and
against the baseline variant (the first by name), from the attribution cells."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from clvflow.measurement.attribution import rollup
from clvflow.measurement.sends import HOLDOUT, TREATED
from clvflow.measurement.stats import Comparison, Group, compare


@dataclass(frozen=True)
class VariantResult:
    variant: str
    group: Group
    vs_holdout: Comparison | None
    vs_baseline: Comparison | None  # None for the baseline itself


@dataclass(frozen=True)
class CampaignResult:
    campaign: str
    treated: Group
    holdout: Group
    vs_holdout: Comparison | None  # None without a holdout
    variants: list[VariantResult] = field(default_factory=list)
    baseline: str | None = None


def _group(frame: pd.DataFrame) -> Group:
    return Group(
        recipients=int(frame["recipients"].sum()),
        conversions=int(frame["conversions"].sum()),
        revenue=float(frame["revenue"].sum()),
        revenue_sq=float(frame["revenue_sq"].sum()),
    )


def campaign_results(cells: pd.DataFrame, *, min_group_size: int) -> list[CampaignResult]:
    """One result per campaign present in the attribution cells."""
    out: list[CampaignResult] = []
    if cells.empty:
        return out
    by_group = rollup(cells, ("campaign", "group", "variant"))
    for campaign, rows in by_group.groupby("campaign", sort=True):
        treated_rows = rows[rows["group"] == TREATED]
        treated = _group(treated_rows)
        holdout = _group(rows[rows["group"] == HOLDOUT])
        has_holdout = holdout.recipients > 0 and treated.recipients > 0
        vs_holdout = (
            compare(treated, holdout, min_group_size=min_group_size) if has_holdout else None
        )
        names = sorted(v for v in treated_rows["variant"].unique() if v)
        variants: list[VariantResult] = []
        baseline = names[0] if len(names) >= 2 else None
        if baseline is not None:
            groups = {v: _group(treated_rows[treated_rows["variant"] == v]) for v in names}
            for name in names:
                label = f"variant {name}"
                variants.append(
                    VariantResult(
                        variant=name,
                        group=groups[name],
                        vs_holdout=compare(
                            groups[name], holdout, min_group_size=min_group_size,
                            treated_label=label,
                        ) if holdout.recipients else None,
                        vs_baseline=None if name == baseline else compare(
                            groups[name], groups[baseline], min_group_size=min_group_size,
                            treated_label=label, control_label=f"variant {baseline}",
                        ),
                    )
                )  # fmt: skip
        out.append(
            CampaignResult(
                campaign=str(campaign),
                treated=treated,
                holdout=holdout,
                vs_holdout=vs_holdout,
                variants=variants,
                baseline=baseline,
            )
        )
    return out
