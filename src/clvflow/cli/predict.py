"""``clvflow predict fit|check``: the purchase and spend models, and how well they did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.project.layout import Project

app = typer.Typer(help="Predicted CLV: fit the models, and check them on held-back orders.")
out = Console(soft_wrap=True)

FormatOption = Annotated[str, typer.Option("--format", help="text or json.")]
UnitOption = Annotated[
    str, typer.Option("--time-unit", help="days or weeks: the unit of α and the horizon.")
]


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        raise typer.BadParameter(f"use {' or '.join(choices)}", param_hint=option)


@app.command("fit")
def fit(
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
    fmt: FormatOption = "text",
    unit: UnitOption = "days",
) -> None:
    """Fit BG/NBD (purchases) and Gamma-Gamma (order value) to the orders up to --as-of."""
    from clvflow.data.sources import open_shop_data
    from clvflow.predictions.fit import UNIT_DAYS, describe, fit_models
    from clvflow.predictions.summary import read_summary

    _check_choice(fmt, ("text", "json"), "--format")
    _check_choice(unit, tuple(UNIT_DAYS), "--time-unit")
    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    data = open_shop_data(loaded)
    try:
        fitted = fit_models(read_summary(data, when), loaded.cache_dir)
        report = describe(fitted, data.prediction_horizon_days, unit)
    finally:
        data.close()
    if fmt == "json":
        typer.echo(json.dumps(report, indent=2))
        return
    _print_fit(report)


def _print_fit(report: dict[str, Any]) -> None:
    unit = report["time_unit"]
    out.print(
        f"Fitted as of {report['as_of']}; times in {unit}; horizon {report['horizon']:g} {unit}.",
        highlight=False,
    )
    purchases = report["purchases"]
    table = Table("parameter", "value", title="Purchases: BG/NBD")
    for key in ("r", "alpha", "a", "b", "log_likelihood"):
        table.add_row(key, f"{purchases[key]:.6g}")
    table.add_row("customers", str(purchases["customers"]))
    out.print(table)
    spend = report["spend"]
    if spend is None:
        out.print(f"Order value: no Gamma-Gamma fit ({report['spend_problem']})", highlight=False)
        return
    table = Table("parameter", "value", title="Order value: Gamma-Gamma (repeat buyers)")
    for key in ("p", "q", "gamma", "log_likelihood"):
        table.add_row(key, f"{spend[key]:.6g}")
    table.add_row("customers", str(spend["customers"]))
    out.print(table)
    correlation = spend["frequency_value_correlation"]
    verdict = (
        "weak: the model's independence assumption holds"
        if abs(correlation) < 0.3
        else "strong: order values depend on frequency, expected values are less reliable"
    )
    out.print(
        f"Correlation of repeat purchases and their mean value: {correlation:.3f} ({verdict})",
        highlight=False,
    )


@app.command("check")
def check(
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
    holdout: Annotated[
        str, typer.Option("--holdout", help="How much history to hold back, e.g. '180 days'.")
    ] = "180 days",
    fmt: FormatOption = "text",
) -> None:
    """Fit on the orders up to --as-of minus --holdout; compare predicted and actual
    purchases in the holdout, against repeating each customer's past rate."""
    from clvflow.data.sources import open_shop_data
    from clvflow.measurement.settings import duration
    from clvflow.predictions.check import check_predictions, check_summary

    _check_choice(fmt, ("text", "json"), "--format")
    try:
        held = duration(holdout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--holdout") from None
    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    data = open_shop_data(loaded)
    try:
        result = check_predictions(data, when, held, loaded.cache_dir)
    finally:
        data.close()
    summary = check_summary(result)
    if fmt == "json":
        typer.echo(json.dumps(summary, indent=2))
        return
    out.print(
        f"Fitted on orders up to {result.cutoff:%Y-%m-%d}; compared over the "
        f"{result.holdout_days} days to {result.as_of:%Y-%m-%d} for "
        f"{result.customers} customers.",
        highlight=False,
    )
    totals = Table("", "purchases", "mean abs. error per customer", title="Holdout")
    totals.add_row("actual", f"{result.actual:,.0f}", "")
    totals.add_row("model", f"{result.predicted:,.1f}", f"{result.mae:.3f}")
    totals.add_row("naive (past rate)", f"{result.naive:,.1f}", f"{result.naive_mae:.3f}")
    out.print(totals)
    out.print(f"The model's error is {result.improvement:.0%} below the naive baseline's.")
    chart = Table(
        "repeat purchases before",
        "customers",
        "actual (mean)",
        "model (mean)",
        "naive (mean)",
        title="Purchases in the holdout by past repeat purchases",
    )
    for row in summary["by_repeat_purchases"]:
        chart.add_row(
            row["label"],
            str(row["customers"]),
            f"{row['actual']:.3f}",
            f"{row['predicted']:.3f}",
            f"{row['naive']:.3f}",
        )
    out.print(chart)
