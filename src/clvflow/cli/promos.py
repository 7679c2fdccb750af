"""``clvflow promos export``: the issued promo codes as CSV, for the shop's checkout."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

from clvflow.cli.options import AsOfOption, ProjectOption, resolve_as_of
from clvflow.project.layout import Project

app = typer.Typer(help="Promo codes issued by campaigns.")

COLUMNS = (
    "code",
    "campaign",
    "occurrence",
    "customer_id",
    "discount_percent",
    "min_order",
    "currency",
    "expires_at",
    "created_at",
    "redeemed_at",
)


@app.command("export")
def export(
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Only this campaign's codes.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="CSV file to write (default: standard output).")
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Every issued code with its discount, minimum order and expiry, as CSV."""
    from clvflow.ledger.store import Ledger

    loaded = Project.load(project)
    ledger = Ledger(loaded.ledger_url)
    try:
        rows = ledger.all_promo_codes(campaign)
    finally:
        ledger.close()
    handle = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    finally:
        if out:
            handle.close()


@app.command("redeem")
def redeem(
    code: Annotated[str, typer.Argument(help="The code the customer entered.")],
    order_total: Annotated[
        float, typer.Option("--order-total", help="The order's total, shop currency.")
    ],
    project: ProjectOption = Path("."),
    as_of: AsOfOption = None,
) -> None:
    """Use a code for an order: once only, before it expires, above its minimum order."""
    from clvflow.ledger.store import Ledger
    from clvflow.personalization.promo import redeem as redeem_code

    loaded = Project.load(project)
    when = resolve_as_of(loaded, as_of)
    ledger = Ledger(loaded.ledger_url)
    try:
        row = redeem_code(ledger.engine, code, order_total, when)
    finally:
        ledger.close()
    typer.echo(
        f"{row['code']}: {row['discount_percent']:g}% off, redeemed at {when:%Y-%m-%d %H:%M} "
        f"(campaign {row['campaign']}, customer {row['customer_id']})"
    )
