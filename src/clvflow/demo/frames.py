"""The demo shop's generated CSV files as data frames for the simulated history, and the
history's response orders appended to them in the same format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clvflow.planning.addresses import valid_addresses

TIMESTAMP = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class ShopFrames:
    """customers (with ``reachable``: consent and a valid address), orders (``total`` in
    cents), and order items with their product's category (prices as written)."""

    customers: pd.DataFrame
    orders: pd.DataFrame
    items: pd.DataFrame
    currency: str


def _cents(text: pd.Series) -> pd.Series:
    return (text.astype(float) * 100).round().astype("int64")


def read_frames(folder: Path, currency: str) -> ShopFrames:
    """The four CSV files :func:`clvflow.demo.shop.generate_shop` wrote into ``folder``."""
    read = {"dtype": object, "keep_default_na": False}  # object: fast isin and merges
    customers = pd.read_csv(folder / "customers.csv", **read)  # type: ignore[call-overload]
    orders = pd.read_csv(folder / "orders.csv", **read)  # type: ignore[call-overload]
    items = pd.read_csv(folder / "order_items.csv", **read)  # type: ignore[call-overload]
    products = pd.read_csv(folder / "products.csv", **read)  # type: ignore[call-overload]
    for column in ("created_at", "wedding_date", "points_expire_at"):
        customers[column] = pd.to_datetime(customers[column].replace("", None)).astype(
            "datetime64[us]"
        )
    customers["loyalty_points"] = customers["loyalty_points"].astype("int64")
    consent = customers["accepts_marketing"].str.lower() == "true"
    valid = np.asarray(valid_addresses(customers["email"].tolist()), dtype=bool)
    customers["reason"] = np.where(
        ~consent, "no_marketing_consent", np.where(~valid, "invalid_address", "")
    )
    customers["reachable"] = customers["reason"] == ""
    orders["placed_at"] = pd.to_datetime(orders["placed_at"], format=TIMESTAMP).astype(
        "datetime64[us]"
    )
    orders["total"] = _cents(orders["total"])
    items = items.merge(products[["product_id", "category"]], on="product_id", how="left")
    return ShopFrames(customers, orders, items, currency)


def append_orders(folder: Path, orders: pd.DataFrame, items: pd.DataFrame) -> None:
    """Add ``orders`` (order_id, customer_id, placed_at, total in cents) and their
    ``items`` (order_id, product_id, quantity, unit_price as written) to the CSV files."""
    if orders.empty:
        return
    rows = pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "customer_id": orders["customer_id"],
            "placed_at": orders["placed_at"].dt.strftime(TIMESTAMP),
            "total": (orders["total"] // 100).astype(str)
            + "."
            + (orders["total"] % 100).astype(str).str.zfill(2),
            "currency": orders["currency"],
        }
    )
    with (folder / "orders.csv").open("a", encoding="utf-8", newline="") as out:
        rows.to_csv(out, header=False, index=False)
    lines = items[["order_id", "product_id", "quantity", "unit_price"]]
    with (folder / "order_items.csv").open("a", encoding="utf-8", newline="") as out:
        lines.to_csv(out, header=False, index=False)
