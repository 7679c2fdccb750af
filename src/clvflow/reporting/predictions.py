"""The prediction check (:mod:`clvflow.predictions.check`) as the report shows it: a
table of totals and errors, the table of purchases by past repeat purchases, and that
table as the classic chart (mean purchases in the holdout, actual against predicted)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clvflow.project.layout import Project

HOLDOUT = dt.timedelta(days=180)


def measure_predictions(
    project: Project, as_of: dt.datetime, holdout: dt.timedelta = HOLDOUT
) -> dict[str, Any]:
    """The prediction check as of ``as_of`` (``check_summary``'s values), or
    ``{"problem": ...}`` when the shop's orders up to the cut-off cannot be fitted."""
    from clvflow.data.sources import open_shop_data
    from clvflow.errors import DataError
    from clvflow.predictions.check import check_predictions, check_summary

    data = open_shop_data(project)
    try:
        return check_summary(check_predictions(data, as_of, holdout, project.cache_dir))
    except DataError as exc:
        return {"problem": exc.message}
    finally:
        data.close()


def check_rows(check: dict[str, Any]) -> list[dict[str, Any]]:
    """Totals and mean absolute errors: actual, the model, the naive baseline."""
    return [
        {"": "actual", "purchases": round(check["actual_purchases"]), "mean abs. error": ""},
        {
            "": "model (BG/NBD)",
            "purchases": round(check["predicted_purchases"], 1),
            "mean abs. error": round(check["mean_absolute_error"], 3),
        },
        {
            "": "naive (past rate)",
            "purchases": round(check["naive_purchases"], 1),
            "mean abs. error": round(check["naive_mean_absolute_error"], 3),
        },
    ]


def repeat_rows(check: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean purchases in the holdout by repeat purchases before it."""
    return [
        {
            "repeat purchases before": row["label"],
            "customers": row["customers"],
            "actual": round(row["actual"], 3),
            "model": round(row["predicted"], 3),
            "naive": round(row["naive"], 3),
        }
        for row in check["by_repeat_purchases"]
    ]


def check_headline(check: dict[str, Any]) -> str:
    return (
        f"Fitted on orders up to {check['cutoff'][:10]}, the models predicted "
        f"{check['predicted_purchases']:,.0f} purchases by {check['customers']:,} customers "
        f"in the {check['holdout_days']} days to {check['as_of'][:10]}; "
        f"{check['actual_purchases']:,.0f} happened. Per customer, the model's error is "
        f"{check['improvement']:.0%} below repeating each customer's past rate."
    )


def check_markdown(check: dict[str, Any]) -> str:
    """The check as markdown (Prefect artifact and the report's markdown)."""
    lines = ["## Predicted CLV: how well the models predicted the past", "", check_headline(check)]
    lines += ["", "| | purchases | mean abs. error |", "|---|---:|---:|"]
    lines += [f"| {r['']} | {r['purchases']} | {r['mean abs. error']} |" for r in check_rows(check)]
    lines += [
        "",
        "| repeat purchases before | customers | actual | model | naive |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['repeat purchases before']} | {r['customers']} | {r['actual']} | {r['model']} "
        f"| {r['naive']} |"
        for r in repeat_rows(check)
    ]
    return "\n".join(lines) + "\n"
