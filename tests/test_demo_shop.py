"""The demo shop generator: determinism, integrity, formats and realistic behaviour."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email

from clvflow.demo.shop import CATEGORIES, WEDDING_STAGES, ShopFiles, ShopSize, generate_shop

REFERENCE = dt.date(2026, 5, 1)
MIDNIGHT = pd.Timestamp(REFERENCE)
SMALL = ShopSize(customers=500, orders=2000, products=60)
TABLES = ("customers", "orders", "order_items", "products")
VALID_EMAIL = re.compile(r"[a-z0-9._]+@example\.(com|org|net)")
TIMESTAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
DATE = r"\d{4}-\d{2}-\d{2}"
MONEY = r"\d+\.\d{2}"


def _read_text(files: ShopFiles) -> dict[str, pd.DataFrame]:
    """Every CSV as text, exactly as written (missing cells are empty strings)."""
    paths = {"customers": files.customers, "orders": files.orders}
    paths |= {"order_items": files.order_items, "products": files.products}
    return {
        name: pd.read_csv(path, dtype=str, keep_default_na=False) for name, path in paths.items()
    }


def _cents(values: pd.Series) -> pd.Series:
    return values.str.replace(".", "", regex=False).astype("int64")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShopFiles, dict[str, pd.DataFrame]]:
    files = generate_shop(tmp_path_factory.mktemp("small"), reference=REFERENCE, size=SMALL)
    return files, _read_text(files)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    files = generate_shop(tmp_path_factory.mktemp("default"), reference=REFERENCE)
    data = _read_text(files)
    data["orders"]["placed_at"] = pd.to_datetime(data["orders"]["placed_at"])
    data["orders"]["total"] = data["orders"]["total"].astype(float)
    return data


# --- determinism and files ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_inputs_give_identical_bytes(tmp_path: Path, fmt: Literal["csv", "parquet"]) -> None:
    one = generate_shop(tmp_path / "one", reference=REFERENCE, seed=3, size=SMALL, fmt=fmt)
    two = generate_shop(tmp_path / "two", reference=REFERENCE, seed=3, size=SMALL, fmt=fmt)
    for name in TABLES:
        first, second = getattr(one, name), getattr(two, name)
        assert first.name == f"{name}.{fmt}"
        assert first.read_bytes() == second.read_bytes(), name


def test_another_seed_gives_another_shop(tmp_path: Path) -> None:
    one = generate_shop(tmp_path / "one", reference=REFERENCE, seed=1, size=SMALL)
    two = generate_shop(tmp_path / "two", reference=REFERENCE, seed=2, size=SMALL)
    assert one.orders.read_bytes() != two.orders.read_bytes()


def test_creates_the_output_directory(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    files = generate_shop(out, reference=REFERENCE, size=ShopSize(50, 100, 10))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    assert files.customers == out / "customers.csv"


def test_rejects_bad_sizes_and_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="products"):
        ShopSize(products=9)
    with pytest.raises(ValueError, match="customer"):
        ShopSize(customers=0)
    with pytest.raises(ValueError, match="format"):
        generate_shop(tmp_path, reference=REFERENCE, fmt="xlsx")  # type: ignore[arg-type]


def test_shop_without_orders(tmp_path: Path) -> None:
    files = generate_shop(tmp_path, reference=REFERENCE, size=ShopSize(20, 0, 10))
    data = _read_text(files)
    assert len(data["customers"]) == 20
    assert data["orders"].empty and data["order_items"].empty
    assert (data["customers"]["loyalty_points"].astype(int) >= 0).all()


# --- shape and integrity -------------------------------------------------------------------


def test_row_counts_match_the_size(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    files, data = small
    assert len(data["customers"]) == files.n_customers == SMALL.customers
    assert len(data["orders"]) == files.n_orders == SMALL.orders
    assert len(data["products"]) == files.n_products == SMALL.products
    assert len(data["order_items"]) == files.n_items
    per_order = data["order_items"].groupby("order_id").size()
    assert per_order.between(1, 4).all()


def test_columns_and_text_formats(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    customers, orders = data["customers"], data["orders"]
    items, products = data["order_items"], data["products"]
    assert list(customers.columns) == [
        *("customer_id", "email", "first_name", "last_name", "locale", "timezone"),
        *("accepts_marketing", "created_at", "role", "wedding_date", "loyalty_points"),
        "points_expire_at",
    ]
    assert list(orders.columns) == ["order_id", "customer_id", "placed_at", "total", "currency"]
    assert list(items.columns) == ["order_id", "product_id", "quantity", "unit_price"]
    assert list(products.columns) == ["product_id", "name", "category", "price", "url"]
    assert customers["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert orders["order_id"].str.fullmatch(r"O\d{7}").all()
    assert products["product_id"].str.fullmatch(r"P\d{3}").all()
    assert customers["customer_id"].iloc[0] == "C000001"
    assert orders["order_id"].iloc[0] == "O0000001"
    assert products["product_id"].iloc[0] == "P001"
    assert customers["customer_id"].is_unique and orders["order_id"].is_unique
    assert customers["created_at"].str.fullmatch(TIMESTAMP).all()
    assert orders["placed_at"].str.fullmatch(TIMESTAMP).all()
    assert customers["accepts_marketing"].isin(["true", "false"]).all()
    for column in ("wedding_date", "points_expire_at"):
        present = customers[column] != ""
        assert customers.loc[present, column].str.fullmatch(DATE).all()
    assert orders["total"].str.fullmatch(MONEY).all()
    assert items["unit_price"].str.fullmatch(MONEY).all()
    assert products["price"].str.fullmatch(MONEY).all()
    assert (orders["currency"] == "EUR").all()
    assert items["quantity"].astype(int).between(1, 5).all()


def test_referential_integrity(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    assert data["orders"]["customer_id"].isin(data["customers"]["customer_id"]).all()
    assert data["order_items"]["order_id"].isin(data["orders"]["order_id"]).all()
    assert data["orders"]["order_id"].isin(data["order_items"]["order_id"]).all()
    assert data["order_items"]["product_id"].isin(data["products"]["product_id"]).all()
    assert not data["order_items"].duplicated(["order_id", "product_id"]).any()


def test_prices_and_totals_add_up(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    items, products = data["order_items"], data["products"]
    price = products.set_index("product_id")["price"]
    assert (items["unit_price"] == items["product_id"].map(price)).all()
    line = items["quantity"].astype("int64") * _cents(items["unit_price"])
    summed = line.groupby(items["order_id"]).sum()
    totals = _cents(data["orders"].set_index("order_id")["total"])
    assert summed.reindex(totals.index).equals(totals)


def test_products_cover_every_category(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    products = data["products"]
    assert set(products["category"]) == set(CATEGORIES)
    assert products["category"].value_counts().min() >= 5
    assert products["name"].is_unique
    assert products["url"].str.fullmatch(r"https://shop\.example/p/[a-z0-9-]+").all()
    assert products["url"].is_unique
    euros = products["price"].astype(float)
    bound_books = products["category"].isin(["albums", "guest-books"])
    assert euros[bound_books].between(29, 149).all()
    assert euros[~bound_books].between(9.9, 89).all()


# --- dates ----------------------------------------------------------------------------------


def test_nothing_happens_after_the_reference_day(
    small: tuple[ShopFiles, dict[str, pd.DataFrame]],
) -> None:
    _, data = small
    placed = pd.to_datetime(data["orders"]["placed_at"])
    created = pd.to_datetime(data["customers"]["created_at"])
    assert placed.max() < MIDNIGHT
    assert created.max() < MIDNIGHT
    assert placed.min() >= MIDNIGHT - pd.Timedelta(days=731)
    assert created.min() >= MIDNIGHT - pd.Timedelta(days=3 * 366)
    assert placed.is_monotonic_increasing  # order numbers are chronological


def test_customers_sign_up_before_their_first_order(
    small: tuple[ShopFiles, dict[str, pd.DataFrame]],
) -> None:
    _, data = small
    first = pd.to_datetime(data["orders"]["placed_at"]).groupby(data["orders"]["customer_id"])
    created = pd.to_datetime(data["customers"].set_index("customer_id")["created_at"])
    first_order = first.min()
    assert (created.loc[first_order.index] <= first_order).all()


def test_dates_move_with_the_reference(tmp_path: Path) -> None:
    later = REFERENCE + dt.timedelta(days=10)
    size = ShopSize(100, 300, 10)
    one = _read_text(generate_shop(tmp_path / "a", reference=REFERENCE, size=size))
    two = _read_text(generate_shop(tmp_path / "b", reference=later, size=size))
    shift = pd.Timedelta(days=10)
    placed = pd.to_datetime(one["orders"]["placed_at"]) + shift
    assert placed.equals(pd.to_datetime(two["orders"]["placed_at"]))
    wedding_one = pd.to_datetime(one["customers"]["wedding_date"]) + shift
    assert wedding_one.equals(pd.to_datetime(two["customers"]["wedding_date"]))
    assert one["order_items"].equals(two["order_items"])


# --- customers -------------------------------------------------------------------------------


def test_locales_timezones_and_names(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    customers = data["customers"]
    assert set(customers["locale"]) == {"en", "hu", "ru"}
    zones = customers.groupby("locale")["timezone"].agg(set).to_dict()
    assert zones == {
        "en": {"Europe/London", "America/New_York"},
        "hu": {"Europe/Budapest"},
        "ru": {"Europe/Moscow"},
    }
    russian = customers["locale"] == "ru"
    cyrillic = r"[А-ЯЁ][а-яё]+"
    assert customers.loc[russian, "first_name"].str.fullmatch(cyrillic).all()
    assert customers.loc[russian, "last_name"].str.fullmatch(cyrillic).all()
    latin = r"[A-ZÁÉÍÓÖŐÚÜŰ][A-Za-z'áéíóöőúüű]+"
    assert customers.loc[~russian, "first_name"].str.fullmatch(latin).all()
    assert customers.loc[~russian, "last_name"].str.fullmatch(latin).all()
    hungarian = customers.loc[customers["locale"] == "hu", "last_name"]
    assert hungarian.str.contains(r"[áéíóöőúüű]").any()


def test_roles_and_wedding_dates(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    customers = data["customers"]
    assert set(customers["role"]) == {"", "couple", "bridesmaid"}
    has_role = customers["role"] != ""
    assert (customers["wedding_date"] != "").equals(has_role)
    days = (pd.to_datetime(customers.loc[has_role, "wedding_date"]) - MIDNIGHT).dt.days
    assert days.between(-120, 420).all()


@pytest.mark.parametrize("size", [SMALL, ShopSize(customers=40, orders=80, products=10)])
def test_couples_in_every_planning_stage(tmp_path: Path, size: ShopSize) -> None:
    customers = _read_text(generate_shop(tmp_path, reference=REFERENCE, size=size))["customers"]
    couples = customers[customers["role"] == "couple"]
    days = (pd.to_datetime(couples["wedding_date"]) - MIDNIGHT).dt.days
    for stage, (low, high) in WEDDING_STAGES.items():
        assert days.between(low, high).any(), stage


def test_loyalty_points(small: tuple[ShopFiles, dict[str, pd.DataFrame]]) -> None:
    _, data = small
    customers = data["customers"]
    points = customers["loyalty_points"].astype(int)
    assert (points >= 0).all()
    assert (points == 0).mean() > 0.2
    assert points.max() >= 1000
    expires = customers["points_expire_at"]
    assert (expires == "").equals(points == 0)
    days = (pd.to_datetime(expires[points > 0]) - MIDNIGHT).dt.days
    assert days.between(-10, 365).all()
    assert days.between(0, 30).any()


def test_emails_are_unique_except_the_invalid_ones(
    small: tuple[ShopFiles, dict[str, pd.DataFrame]],
) -> None:
    _, data = small
    emails = data["customers"]["email"]
    assert (emails == emails.str.lower()).all()
    valid = emails.str.fullmatch(VALID_EMAIL.pattern)
    assert 1 <= (~valid).sum() <= 10
    assert emails[valid].is_unique
    for address in emails[~valid]:
        with pytest.raises(EmailNotValidError):
            validate_email(address, check_deliverability=False)
    for address in emails[valid].head(100):
        validate_email(address, check_deliverability=False)


# --- formats ----------------------------------------------------------------------------------


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A Parquet table spelled like the CSV files."""
    out = pd.DataFrame(index=frame.index)
    for name, column in frame.items():
        if pd.api.types.is_bool_dtype(column):
            text = column.map({True: "true", False: "false"})
        elif pd.api.types.is_float_dtype(column):
            text = column.map("{:.2f}".format)
        elif pd.api.types.is_integer_dtype(column):
            text = column.astype(str)
        elif name in ("created_at", "placed_at"):
            text = pd.to_datetime(column).dt.strftime("%Y-%m-%d %H:%M:%S")
        elif name in ("wedding_date", "points_expire_at"):
            text = pd.to_datetime(column).dt.strftime("%Y-%m-%d")
        else:
            text = column
        out[name] = text.astype(object).where(column.notna(), "")
    return out


def test_parquet_holds_the_same_rows_as_csv(
    tmp_path: Path, small: tuple[ShopFiles, dict[str, pd.DataFrame]]
) -> None:
    _, csv = small
    files = generate_shop(tmp_path, reference=REFERENCE, size=SMALL, fmt="parquet")
    for name in TABLES:
        frame = pd.read_parquet(getattr(files, name))
        expected = csv[name].astype(object)
        pd.testing.assert_frame_equal(_as_text(frame), expected, check_dtype=False, obj=name)


def test_parquet_row_groups_let_readers_scan_in_parallel(tmp_path: Path) -> None:
    """A table larger than one row group is split: one reader thread per group."""
    import pyarrow.parquet as pq

    from clvflow.demo.shop import ROW_GROUP

    size = ShopSize(customers=20_000, orders=80_000)
    files = generate_shop(tmp_path, reference=REFERENCE, size=size, fmt="parquet")
    meta = pq.ParquetFile(files.order_items).metadata
    assert meta.num_rows > ROW_GROUP
    assert meta.num_row_groups == -(-meta.num_rows // ROW_GROUP)


# --- behaviour at the default size --------------------------------------------------------------


def test_orders_per_customer_are_skewed(default: dict[str, pd.DataFrame]) -> None:
    customers, orders = default["customers"], default["orders"]
    per_customer = orders.groupby("customer_id").size()
    no_order_share = 1 - len(per_customer) / len(customers)
    assert 0.15 <= no_order_share <= 0.25
    assert (per_customer == 1).mean() > 0.3  # many one-time buyers
    assert per_customer.max() >= 30  # a long tail
    spend = orders.groupby("customer_id")["total"].sum().sort_values()
    top = spend.iloc[-len(spend) // 100 :]
    assert top.sum() / spend.sum() > 0.08  # a few big spenders


def test_lapsed_and_new_buyers_exist(default: dict[str, pd.DataFrame]) -> None:
    placed = default["orders"].groupby("customer_id")["placed_at"]
    first, last, count = placed.min(), placed.max(), placed.size()
    lapsed = (count > 1) & (last < MIDNIGHT - pd.Timedelta(days=90))
    assert lapsed.sum() >= 100
    new = first >= MIDNIGHT - pd.Timedelta(days=7)
    assert 12 <= new.sum() <= 120  # a few dozen


def test_shares_of_locales_roles_and_consent(default: dict[str, pd.DataFrame]) -> None:
    customers = default["customers"]
    locales = customers["locale"].value_counts(normalize=True)
    assert locales["en"] == pytest.approx(0.6, abs=0.03)
    assert locales["hu"] == pytest.approx(0.2, abs=0.03)
    assert locales["ru"] == pytest.approx(0.2, abs=0.03)
    roles = customers["role"].value_counts(normalize=True)
    assert roles["couple"] == pytest.approx(0.25, abs=0.03)
    assert roles["bridesmaid"] == pytest.approx(0.12, abs=0.03)
    assert (customers["accepts_marketing"] == "true").mean() == pytest.approx(0.95, abs=0.02)
    invalid = ~customers["email"].str.fullmatch(VALID_EMAIL.pattern)
    assert invalid.mean() == pytest.approx(0.003, abs=0.002)


def _couple_purchases(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    items = data["order_items"].merge(data["orders"], on="order_id")
    items = items.merge(data["products"][["product_id", "category"]], on="product_id")
    items = items.merge(data["customers"][["customer_id", "role", "wedding_date"]])
    couples = items[items["role"] == "couple"].copy()
    wedding = pd.to_datetime(couples["wedding_date"])
    couples["days_to_wedding"] = (wedding - couples["placed_at"].dt.normalize()).dt.days
    return couples


def test_couples_buy_in_planning_order(default: dict[str, pd.DataFrame]) -> None:
    couples = _couple_purchases(default)
    median = couples.groupby("category")["days_to_wedding"].median()
    stages = ["save-the-dates", "invitations", "place-cards", "thank-you-cards"]
    assert list(median[stages]) == sorted(median[stages], reverse=True)
    assert median["save-the-dates"] > 240
    assert median["thank-you-cards"] < 0


def test_suites_are_bought_together(default: dict[str, pd.DataFrame]) -> None:
    products = default["products"]
    suite = products["name"].str.rsplit(" ", n=2).str[0]  # "Gold Foil" of "Gold Foil Place Cards"
    items = default["order_items"][["order_id", "product_id"]]
    items = items.assign(suite=items["product_id"].map(suite.set_axis(products["product_id"])))
    pairs = items.merge(items, on="order_id")
    pairs = pairs[pairs["product_id_x"] < pairs["product_id_y"]]
    same_suite = (pairs["suite_x"] == pairs["suite_y"]).mean()
    chance = float(np.square(items["suite"].value_counts(normalize=True)).sum())
    assert same_suite > 0.6
    assert same_suite > 2 * chance
