"""Generate a deterministic demo wedding-stationery shop: customers, orders, items, products.

Everything is drawn from ``numpy.random.default_rng(seed)`` with whole-array operations
(no Python loop per customer or order), so the same function writes 5,000 customers as
CSV for a demo and 1,000,000 customers with 10,000,000 orders as Parquet for a benchmark.
The same seed, reference day, size and format give byte-identical files.

All dates are relative to ``reference``, the day the demo runs. Timestamps (naive, shop
local time) fall before midnight at the start of that day, as if the shop exported its
data overnight; wedding dates and points expiry dates also lie in the future, so that
segments such as "last order more than 90 days ago", "first order in the last 7 days" or
"wedding in the next 60 days" always have members.

The behaviour behind the numbers: about a fifth of the customers never order; orders per
buyer are heavily skewed (many one-time buyers, a long tail, a few big spenders); some
buyers stop buying; couples and bridesmaids buy around their wedding date, couples in
planning order (save-the-dates, invitations, day-of stationery, thank-you cards); and a
customer tends to stay with one design suite, whose products are bought together.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["CATEGORIES", "DEFAULT_SIZE", "WEDDING_STAGES", "ShopFiles", "ShopSize", "generate_shop"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Format = Literal["csv", "parquet"]
ROW_GROUP = 122_880

DAY = 86_400
EPOCH = dt.date(1970, 1, 1)

CATEGORIES = (
    "save-the-dates",
    "invitations",
    "place-cards",
    "table-numbers",
    "menus",
    "thank-you-cards",
    "albums",
    "guest-books",
    "favors",
    "gift-wrap",
)
STD, INV, PLACE, TABLE, MENU, THANKS, ALBUM, GUEST, FAVOR, WRAP = range(len(CATEGORIES))

# Days from the reference day to the wedding date (inclusive bounds) for which a couple is
# in each planning stage; the generator makes sure every stage has couples in it.
WEDDING_STAGES: dict[str, tuple[int, int]] = {
    "save-the-dates": (240, 365),
    "invitations": (60, 120),
    "day-of": (0, 28),
    "thank-you-cards": (-42, -1),
}

LOCALES = ("en", "hu", "ru")
TIMEZONES = ("Europe/London", "America/New_York", "Europe/Budapest", "Europe/Moscow")
ROLES = (None, "couple", "bridesmaid")
DOMAINS = ("example.com", "example.org", "example.net")
CURRENCY = "EUR"
PRODUCT_URL = "https://shop.example/p/"
TABLES = ("customers", "orders", "order_items", "products")

# --- customers -------------------------------------------------------------------------
LOCALE_P = (0.60, 0.20, 0.20)
NEW_YORK_SHARE = 0.45  # of the en customers; the rest are in London
FEMALE_SHARE = 0.70
ACCEPTS_MARKETING_P = 0.95
ROLE_P = (0.63, 0.25, 0.12)  # none, couple, bridesmaid
WEDDING_DAYS = (-120, 420)  # wedding date range, days from reference
COUPLE_LEAD_DAYS = (300, 450)  # couples start buying this many days before the wedding
HELPER_LEAD_DAYS = (30, 240)  # bridesmaids likewise
SIGNUP_LEAD_DAYS = 30.0  # mean days between signing up and starting to plan
HISTORY_DAYS = 1095  # customers signed up in the last ~3 years
ORDER_HISTORY_DAYS = 730  # orders were placed in the last ~2 years
INVALID_EMAIL_SHARE = 0.003
CHECKOUT_SIGNUP_SHARE = 0.5  # of the buyers: account created at their first checkout

# --- orders ------------------------------------------------------------------------------
NO_ORDER_SHARE = 0.20
FIRST_ORDER_DAYS = 14.0  # mean days from starting to buy to the first order
NOT_DUE_WEIGHT = 0.001  # relative chance to be a buyer when the first order is not due yet
ACTIVITY_SHAPE = 0.35  # gamma shape of buying activity: small = skewed
ROLE_ACTIVITY = np.array([1.0, 1.5, 0.8])  # none, couple, bridesmaid
CHURN_SHARE = 0.40  # of the customers without a wedding: they stop buying at some point
SUITE_LOYALTY = 0.85  # chance an order (or an item in it) stays in the customer's suite
HOUR_WEIGHTS = (
    *(0.5, 0.3, 0.2, 0.2, 0.2, 0.3, 0.8, 1.5, 2.5, 3.5, 4.0, 4.5),
    *(5.0, 4.5, 4.0, 4.0, 4.0, 4.5, 5.5, 6.5, 7.0, 6.0, 4.0, 2.0),
)

# Order behaviour groups: couples by planning stage, then bridesmaids and everyone else.
G_SAVE, G_INVITE, G_DAY_OF, G_AFTER, G_BRIDESMAID, G_OTHER = range(6)
# A couple buys for a stage while the wedding is more than this many days away (the day-of
# stage includes the wedding day; the stage after the wedding has no bound).
STAGE_STARTS = (180, 42, 0)

# Main category of an order by group; columns follow CATEGORIES.
PRIMARY_P = (
    (0.75, 0.10, 0.00, 0.00, 0.00, 0.00, 0.03, 0.04, 0.03, 0.05),
    (0.05, 0.62, 0.10, 0.04, 0.06, 0.00, 0.00, 0.05, 0.05, 0.03),
    (0.00, 0.03, 0.25, 0.17, 0.17, 0.00, 0.00, 0.10, 0.20, 0.08),
    (0.00, 0.00, 0.00, 0.00, 0.00, 0.62, 0.28, 0.00, 0.03, 0.07),
    (0.00, 0.00, 0.00, 0.00, 0.00, 0.05, 0.10, 0.15, 0.35, 0.35),
    (0.03, 0.05, 0.05, 0.03, 0.04, 0.10, 0.20, 0.15, 0.17, 0.18),
)
# Number of items (1-4) of an order by group.
ITEMS_P = (
    (0.55, 0.30, 0.10, 0.05),
    (0.30, 0.35, 0.25, 0.10),
    (0.20, 0.30, 0.30, 0.20),
    (0.45, 0.35, 0.15, 0.05),
    (0.45, 0.35, 0.15, 0.05),
    (0.50, 0.30, 0.15, 0.05),
)
# Categories bought together with an order's main category, strongest first.
COMPANIONS = (
    (WRAP, GUEST, INV, FAVOR),  # save-the-dates
    (PLACE, MENU, TABLE, WRAP),  # invitations
    (TABLE, MENU, FAVOR, GUEST),  # place-cards
    (PLACE, MENU, FAVOR, GUEST),  # table-numbers
    (PLACE, TABLE, FAVOR, GUEST),  # menus
    (ALBUM, WRAP, FAVOR, GUEST),  # thank-you-cards
    (GUEST, THANKS, WRAP, FAVOR),  # albums
    (ALBUM, FAVOR, PLACE, WRAP),  # guest-books
    (WRAP, PLACE, GUEST, TABLE),  # favors
    (FAVOR, ALBUM, GUEST, THANKS),  # gift-wrap
)
COMPANION_START_P = (0.55, 0.20, 0.15, 0.10)
# Quantity (1-5 packs) by category.
_PACKS = (0.35, 0.30, 0.20, 0.10, 0.05)
_FEW = (0.55, 0.30, 0.10, 0.03, 0.02)
_ONE = (0.85, 0.10, 0.03, 0.01, 0.01)
QUANTITY_P = (
    _PACKS,
    _PACKS,
    _PACKS,
    _FEW,
    _FEW,
    _PACKS,
    _ONE,
    _ONE,
    (0.25, 0.25, 0.20, 0.15, 0.15),
    (0.30, 0.30, 0.20, 0.10, 0.10),
)

# --- products ------------------------------------------------------------------------------
THEMES = (
    "Botanical",
    "Gold Foil",
    "Rustic Kraft",
    "Modern Minimal",
    "Watercolor Floral",
    "Vintage Lace",
    "Eucalyptus",
    "Art Deco",
    "Boho Pampas",
    "Classic Letterpress",
    "Terracotta Sunset",
    "Winter Frost",
)
THEME_EDITIONS = ("", "Deluxe ", "Petite ", "Luxe ", "Heritage ", "Mini ")
PRODUCT_NOUNS = (
    "Save-the-Date Card",
    "Invitation Suite",
    "Place Cards",
    "Table Numbers",
    "Menu Cards",
    "Thank-You Cards",
    "Wedding Album",
    "Guest Book",
    "Favor Boxes",
    "Gift Wrap",
)
# Price range of a pack or piece in cents, by category.
PRICE_CENTS = (
    (1290, 3990),
    (2900, 8900),
    (990, 2490),
    (1290, 2990),
    (1490, 3990),
    (1290, 3490),
    (4900, 14900),
    (2900, 8900),
    (1490, 4990),
    (990, 1990),
)

# --- names -----------------------------------------------------------------------------------
_EN_FEMALE = (
    "Emma Olivia Sophie Charlotte Amelia Grace Emily Hannah Lucy Chloe Jessica Sarah "
    "Laura Rachel Megan Ashley Lauren Madison Abigail Ella Isabella Katie Holly Natalie"
)
_EN_MALE = (
    "James Oliver Thomas William Jack Harry George Daniel Matthew Michael Ryan Ethan "
    "Noah Benjamin Samuel Joshua Andrew Luke"
)
_EN_LAST = (
    "Smith Johnson Williams Brown Jones Taylor Wilson Davies Evans Roberts Walker Wright "
    "Thompson White Hughes Edwards Green Hall Wood Harris Clarke Jackson Turner Miller "
    "Davis Anderson Moore Martin O'Brien Murphy Campbell Mitchell Bennett Cooper Parker"
)
_HU_FEMALE = (
    "Anna Eszter Zsófia Katalin Réka Dóra Petra Viktória Boglárka Lilla Nóra Krisztina "
    "Judit Orsolya Ágnes Csilla Hanna Fanni Luca Tímea"
)
_HU_MALE = (
    "László Gábor Péter Zoltán Attila Balázs Bence Dániel Tamás Ádám Máté Gergely "
    "Levente Márton Csaba Dávid"
)
_HU_LAST = (
    "Nagy Kovács Tóth Szabó Horváth Varga Kiss Molnár Németh Farkas Balogh Papp Takács "
    "Juhász Lakatos Mészáros Oláh Simon Rácz Fekete Szilágyi Török Fehér Gál Szűcs "
    "Kocsis Pintér Vass Bíró Hegedűs"
)
_RU_FEMALE = (
    "Анна Мария Екатерина Ольга Татьяна Наталья Елена Анастасия Дарья Ксения Юлия "
    "Виктория Полина Алина Ирина Светлана Софья Вера"
)
_RU_MALE = (
    "Александр Дмитрий Максим Сергей Андрей Алексей Иван Михаил Никита Артём Павел "
    "Кирилл Егор Владимир"
)
_RU_LAST_MALE = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров "
    "Морозов Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев "
    "Орлов Андреев Макаров Никитин Захаров Зайцев Соловьёв Борисов Вишневский Покровский"
)
_CYRILLIC_LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
_LATIN_SPELLINGS = "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya"
_CYRILLIC: dict[int, str] = {
    ord(letter): spelling.strip("-")
    for letter, spelling in zip(_CYRILLIC_LETTERS, _LATIN_SPELLINGS.split(), strict=True)
}


@dataclass(frozen=True)
class ShopSize:
    """How many customers, orders and products to generate."""

    customers: int = 5000
    orders: int = 20000
    products: int = 60

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("a demo shop needs at least one customer")
        if self.orders < 0:
            raise ValueError("the number of orders cannot be negative")
        if self.products < len(CATEGORIES):
            raise ValueError(f"a demo shop needs at least {len(CATEGORIES)} products")


@dataclass(frozen=True)
class ShopFiles:
    """The files :func:`generate_shop` wrote, and how many rows each holds."""

    customers: Path
    orders: Path
    order_items: Path
    products: Path
    n_customers: int
    n_orders: int
    n_items: int
    n_products: int


DEFAULT_SIZE = ShopSize()


# --- internal arrays ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalog:
    names: list[str]
    category: IntArray
    price_cents: IntArray
    suites_in_category: IntArray  # products per category; a suite is a theme
    n_suites: int


@dataclass(frozen=True)
class _People:
    locale: IntArray
    female: BoolArray
    role: IntArray  # index into ROLES
    wedding_day: IntArray  # days from reference; meaningful where role > 0
    planning_day: IntArray  # when people with a wedding start buying for it
    created_day: IntArray  # days from reference (negative)
    suite: IntArray  # preferred design suite


@dataclass(frozen=True)
class _Orders:
    """Orders in chronological order; times are seconds from reference midnight."""

    customer: IntArray
    placed_s: IntArray
    group: IntArray
    suite: IntArray
    first_s: IntArray  # per customer: first order, or 0 when none
    ordered: BoolArray  # per customer


@dataclass(frozen=True)
class _Items:
    order: IntArray
    product: IntArray
    quantity: IntArray
    price_cents: IntArray


# --- helpers -----------------------------------------------------------------------------


def _probabilities(rows: tuple[tuple[float, ...], ...]) -> FloatArray:
    table = np.asarray(rows, dtype=np.float64)
    totals: FloatArray = table.sum(axis=1, keepdims=True)
    return table / totals


def _pick(rng: np.random.Generator, p: npt.ArrayLike, n: int) -> IntArray:
    """``n`` draws of an index of ``p`` (weights, need not sum to one)."""
    weights = np.asarray(p, dtype=np.float64)
    return rng.choice(len(weights), size=n, p=weights / weights.sum()).astype(np.int64)


def _pick_by_group(rng: np.random.Generator, table: FloatArray, groups: IntArray) -> IntArray:
    """For each row, a column of ``table`` drawn with the probabilities of its group's row.

    Each group's cumulative probabilities are shifted by the group number so one
    ``searchsorted`` handles all groups at once.
    """
    n_groups, width = int(table.shape[0]), int(table.shape[1])
    cumulative = np.cumsum(table, axis=1)
    cumulative[:, -1] = 1.0
    edges = (cumulative + np.arange(n_groups)[:, None]).ravel()
    draws = rng.random(len(groups)) + groups
    column: IntArray = np.searchsorted(edges, draws, side="right") - groups * width
    return np.minimum(column, width - 1)


def _uniform_int(rng: np.random.Generator, low: IntArray, high: IntArray) -> IntArray:
    """One integer drawn uniformly from ``[low, high]`` for each pair of bounds."""
    return low + (rng.random(len(low)) * (high - low + 1)).astype(np.int64)


def _popular_suite(rng: np.random.Generator, n_suites: int, n: int) -> IntArray:
    """Design suites drawn by popularity: the first suites are the bestsellers."""
    weights = 1.0 / np.arange(1, n_suites + 1) ** 0.7
    return _pick(rng, weights, n)


def _time_of_day(rng: np.random.Generator, n: int) -> IntArray:
    hour = _pick(rng, HOUR_WEIGHTS, n)
    return hour * 3600 + rng.integers(0, 3600, size=n, dtype=np.int64)


# --- products ----------------------------------------------------------------------------


def _suite_name(suite: int) -> str:
    edition, theme = divmod(suite, len(THEMES))
    prefix = THEME_EDITIONS[edition % len(THEME_EDITIONS)]
    number = "" if edition < len(THEME_EDITIONS) else f" {edition // len(THEME_EDITIONS) + 1}"
    return f"{prefix}{THEMES[theme]}{number}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _make_catalog(rng: np.random.Generator, n_products: int) -> _Catalog:
    """Product ``k`` is the design suite ``k // 10`` in the category ``k % 10``."""
    n_cat = len(CATEGORIES)
    index = np.arange(n_products, dtype=np.int64)
    category = index % n_cat
    names = [f"{_suite_name(k // n_cat)} {PRODUCT_NOUNS[k % n_cat]}" for k in range(n_products)]
    bounds = np.asarray(PRICE_CENTS, dtype=np.int64)[category]
    euros = _uniform_int(rng, bounds[:, 0] // 100, bounds[:, 1] // 100)
    cents = np.where(rng.random(n_products) < 0.7, 90, 0)
    price = np.clip(euros * 100 + cents, bounds[:, 0], bounds[:, 1])
    per_category = np.bincount(category, minlength=n_cat).astype(np.int64)
    return _Catalog(names, category, price, per_category, int(per_category.max()))


# --- customers ---------------------------------------------------------------------------


def _handle(name: str) -> str:
    """The ASCII, lowercase spelling of a name used in e-mail addresses."""
    latin = name.lower().translate(_CYRILLIC)
    plain = unicodedata.normalize("NFKD", latin).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", plain)


def _russian_female(surname: str) -> str:
    return surname[:-2] + "ая" if surname.endswith("ий") else surname + "а"


@dataclass(frozen=True)
class _NamePool:
    """Names of every (locale, gender) group in one list; group ``2 * locale + male``."""

    names: list[str]
    start: IntArray
    size: IntArray

    @classmethod
    def of(cls, groups: list[list[str]]) -> _NamePool:
        sizes = np.asarray([len(g) for g in groups], dtype=np.int64)
        starts = np.cumsum(sizes) - sizes
        return cls([name for g in groups for name in g], starts, sizes)

    def draw(self, rng: np.random.Generator, group: IntArray) -> IntArray:
        start, size = self.start[group], self.size[group]
        return _uniform_int(rng, start, start + size - 1)


def _name_pools() -> tuple[_NamePool, _NamePool]:
    first = [_EN_FEMALE, _EN_MALE, _HU_FEMALE, _HU_MALE, _RU_FEMALE, _RU_MALE]
    ru_male = _RU_LAST_MALE.split()
    last = [
        _EN_LAST.split(),
        _EN_LAST.split(),
        _HU_LAST.split(),
        _HU_LAST.split(),
        [_russian_female(s) for s in ru_male],
        ru_male,
    ]
    return _NamePool.of([g.split() for g in first]), _NamePool.of(last)


def _make_people(rng: np.random.Generator, n: int, n_suites: int) -> _People:
    locale = _pick(rng, LOCALE_P, n)
    female = rng.random(n) < FEMALE_SHARE
    role = _pick(rng, ROLE_P, n)
    wedding_day = _uniform_int(
        rng, np.full(n, WEDDING_DAYS[0], np.int64), np.full(n, WEDDING_DAYS[1], np.int64)
    )
    _cover_stages(rng, role, wedding_day)
    planning_day = wedding_day - np.where(
        role == 1,
        _uniform_int(rng, np.full(n, COUPLE_LEAD_DAYS[0]), np.full(n, COUPLE_LEAD_DAYS[1])),
        _uniform_int(rng, np.full(n, HELPER_LEAD_DAYS[0]), np.full(n, HELPER_LEAD_DAYS[1])),
    )
    created_day = np.where(role > 0, _wedding_signup_days(rng, planning_day), _signup_days(rng, n))
    suite = _popular_suite(rng, n_suites, n)
    return _People(locale, female, role, wedding_day, planning_day, created_day, suite)


def _signup_days(rng: np.random.Generator, n: int) -> IntArray:
    """Sign-up days (from reference, negative); the shop grows, so the density of sign-ups
    rises linearly to twice its starting value over the history."""
    u = rng.random(n)
    position = np.sqrt(1 + 3 * u) - 1  # inverse CDF of the density (1 + x) / 1.5 on [0, 1]
    return -1 - (HISTORY_DAYS * (1 - position)).astype(np.int64)


def _wedding_signup_days(rng: np.random.Generator, planning_day: IntArray) -> IntArray:
    """People with a wedding sign up shortly before they start planning, or, if that is
    still to come, some time in the last weeks."""
    n = len(planning_day)
    signup = planning_day - rng.exponential(SIGNUP_LEAD_DAYS, n).astype(np.int64)
    recent = -1 - rng.exponential(SIGNUP_LEAD_DAYS, n).astype(np.int64)
    return np.maximum(np.where(signup > -1, recent, signup), -HISTORY_DAYS)


def _cover_stages(rng: np.random.Generator, role: IntArray, wedding_day: IntArray) -> None:
    """Put the first couples' weddings in each planning stage (matters for tiny shops)."""
    couples = np.flatnonzero(role == 1)
    for couple, (low, high) in zip(couples, WEDDING_STAGES.values(), strict=False):
        wedding_day[couple] = rng.integers(low, high + 1)


# --- e-mail addresses ----------------------------------------------------------------------

# Address styles: anna.kovacs12, anna.kovacs, annakovacs1990, akovacs7, anna_kovacs, kovacs.anna
EMAIL_STYLE_P = (0.35, 0.15, 0.15, 0.12, 0.10, 0.13)
_STYLE_HEAD = np.array([0, 0, 0, 1, 0, 2])  # first name, initial, last name
_STYLE_SEP = np.array([".", ".", "", "", "_", "."])
_STYLE_NUMBER_P = np.array([1.0, 0.0, 1.0, 1.0, 0.5, 0.5])


def _email_numbers(rng: np.random.Generator, n: int) -> Any:
    kind = _pick(rng, (0.4, 0.3, 0.3), n)
    number = np.select(
        [kind == 0, kind == 1],
        [rng.integers(10, 100, n), rng.integers(1965, 2005, n)],
        rng.integers(1, 1000, n),
    )
    return pa.array(number).cast(pa.string())


def _duplicated(values: Any) -> BoolArray:
    """True for every value already seen earlier in the array."""
    codes = np.asarray(pc.dictionary_encode(values).indices, dtype=np.int64)
    seen = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    return np.asarray(codes <= seen, dtype=np.bool_)


def _local_parts(rng: np.random.Generator, first: Any, last: Any) -> Any:
    n = len(first)
    style = _pick(rng, EMAIL_STYLE_P, n)
    initial = pc.utf8_slice_codeunits(first, 0, 1)
    head = pc.choose(pa.array(_STYLE_HEAD[style]), first, initial, last)
    tail = pc.if_else(pa.array(style == 5), first, last)
    with_number = pa.array(rng.random(n) < _STYLE_NUMBER_P[style])
    number = pc.if_else(with_number, _email_numbers(rng, n), "")
    return pc.binary_join_element_wise(head, pa.array(_STYLE_SEP[style]), tail, number, "")


def _unique_emails(rng: np.random.Generator, first: Any, last: Any) -> tuple[Any, Any]:
    """Local parts and domains whose addresses are all different."""
    n = len(first)
    local = _local_parts(rng, first, last)
    domain = pa.array(DOMAINS).take(pa.array(_pick(rng, (0.6, 0.2, 0.2), n)))
    for _ in range(100):
        dup = _duplicated(pc.binary_join_element_wise(local, domain, "@"))
        rows = pa.array(np.flatnonzero(dup))
        if len(rows) == 0:
            return local, domain
        number = pa.array(rng.integers(100, 1_000_000, len(rows))).cast(pa.string())
        fresh = pc.binary_join_element_wise(first.take(rows), ".", last.take(rows), number, "")
        local = pc.replace_with_mask(local, pa.array(dup), fresh)
    raise RuntimeError("could not make the demo e-mail addresses unique")


def _emails(rng: np.random.Generator, first: Any, last: Any) -> Any:
    """Unique, lowercase addresses, a few of them deliberately invalid."""
    n = len(first)
    local, domain = _unique_emails(rng, first, last)
    emails = pc.binary_join_element_wise(local, domain, "@")
    n_invalid = max(1, round(n * INVALID_EMAIL_SHARE)) if n >= 10 else 0
    invalid = np.zeros(n, dtype=np.bool_)
    invalid[rng.choice(n, size=n_invalid, replace=False)] = True
    rows = pa.array(np.flatnonzero(invalid))
    bad_local, bad_domain = local.take(rows), domain.take(rows)
    broken = pc.choose(
        pa.array(rng.integers(0, 5, n_invalid)),
        pc.binary_join_element_wise(bad_local, "", "@"),  # anna.kovacs@
        pc.binary_join_element_wise(bad_local, bad_domain, "."),  # anna.kovacs.example.com
        pc.binary_join_element_wise(bad_local, "example", "@"),  # anna.kovacs@example
        pc.binary_join_element_wise(bad_local, bad_domain, "@@"),  # anna.kovacs@@example.com
        pc.binary_join_element_wise(bad_local, pc.replace_substring(bad_domain, ".", ".."), "@"),
    )
    return pc.replace_with_mask(emails, pa.array(invalid), broken)


# --- orders --------------------------------------------------------------------------------


def _order_windows(
    rng: np.random.Generator, people: _People
) -> tuple[IntArray, IntArray, BoolArray]:
    """First and last day (from reference) on which each customer may order, and whether
    they are still waiting to start (planning for a wedding that is too far away).

    People with a wedding order from the day they start planning for it to 2 months after
    it; some of the others stop ordering at a random day (lapsed customers).
    """
    n = len(people.role)
    start = np.maximum(people.created_day, -ORDER_HISTORY_DAYS)
    churned = rng.random(n) < CHURN_SHARE
    end = np.where(churned, _uniform_int(rng, start, np.full(n, -1, np.int64)), -1)
    has_role = people.role > 0
    wed_end = np.minimum(-1, people.wedding_day + 60)
    wed_start = np.maximum(start, people.planning_day)
    waiting = has_role & (wed_start > wed_end)
    start = np.where(has_role, np.minimum(wed_start, wed_end), start)
    return start, np.where(has_role, wed_end, end), waiting


def _orders_per_customer(
    rng: np.random.Generator,
    n_orders: int,
    *,
    people: _People,
    start: IntArray,
    end: IntArray,
    due: BoolArray,
) -> IntArray:
    """Skewed counts summing to ``n_orders``; about a fifth of the customers get none,
    mostly those whose first order is not due yet."""
    n = len(start)
    counts = np.zeros(n, dtype=np.int64)
    if n_orders == 0:
        return counts
    n_buyers = min(n_orders, max(1, round(n * (1 - NO_ORDER_SHARE))))
    # Weighted sampling without replacement (Efraimidis-Spirakis): the largest keys win.
    keys = np.log(rng.random(n)) / np.where(due, 1.0, NOT_DUE_WEIGHT)
    buyers = np.sort(np.argpartition(-keys, n_buyers - 1)[:n_buyers])
    activity = rng.gamma(ACTIVITY_SHAPE, size=n_buyers) + 1e-9
    activity *= (end - start + 30)[buyers] * ROLE_ACTIVITY[people.role[buyers]]
    extra = rng.multinomial(n_orders - n_buyers, activity / activity.sum())
    counts[buyers] = 1 + extra
    return counts


def _first_order_days(
    rng: np.random.Generator, start: IntArray, end: IntArray, waiting: BoolArray
) -> tuple[IntArray, BoolArray]:
    """Day of each customer's first order, and whether it is due by now.

    Customers who start buying within the history (new sign-ups, couples starting to plan)
    order for the first time a few weeks later, which may still be in the future (then
    they are rarely buyers yet); older customers order first any time in their window.
    """
    soon = start + rng.exponential(FIRST_ORDER_DAYS, len(start)).astype(np.int64)
    fresh = start > -ORDER_HISTORY_DAYS
    first = np.where(fresh, soon, _uniform_int(rng, start, end))
    return np.minimum(first, end), (first <= end) & ~waiting


def _order_groups(people: _People, customer: IntArray, day: IntArray) -> IntArray:
    """Behaviour group of each order: a couple's planning stage on the order day, else
    bridesmaid or other."""
    role = people.role[customer]
    to_wedding = people.wedding_day[customer] - day
    stage = np.where(
        to_wedding > STAGE_STARTS[G_SAVE],
        G_SAVE,
        np.where(
            to_wedding > STAGE_STARTS[G_INVITE],
            G_INVITE,
            np.where(to_wedding >= STAGE_STARTS[G_DAY_OF], G_DAY_OF, G_AFTER),
        ),
    )
    return np.where(role == 1, stage, np.where(role == 2, G_BRIDESMAID, G_OTHER))


def _make_orders(
    rng: np.random.Generator, people: _People, n_orders: int, n_suites: int
) -> _Orders:
    start, end, waiting = _order_windows(rng, people)
    first_day, due = _first_order_days(rng, start, end, waiting)
    counts = _orders_per_customer(rng, n_orders, people=people, start=start, end=end, due=due)
    customer = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    day = _uniform_int(rng, first_day[customer], end[customer])
    ordered = counts > 0
    first_row = (np.cumsum(counts) - counts)[ordered]
    day[first_row] = first_day[ordered]
    placed_s = day * DAY + _time_of_day(rng, n_orders)
    first_s = np.zeros(len(counts), dtype=np.int64)
    if n_orders:
        first_s[ordered] = np.minimum.reduceat(placed_s, first_row)
    chronological = np.argsort(placed_s, kind="stable")
    customer, placed_s = customer[chronological], placed_s[chronological]
    day = placed_s // DAY
    group = _order_groups(people, customer, day)
    stays = rng.random(n_orders) < SUITE_LOYALTY
    suite = np.where(stays, people.suite[customer], _popular_suite(rng, n_suites, n_orders))
    return _Orders(customer, placed_s, group, suite, first_s, ordered)


# --- order items -----------------------------------------------------------------------------


def _make_items(rng: np.random.Generator, orders: _Orders, catalog: _Catalog) -> _Items:
    """1-4 items per order: its main category, then distinct companion categories, mostly
    from the order's design suite (so suites co-occur), never the same product twice."""
    n_orders = len(orders.customer)
    per_order = 1 + _pick_by_group(rng, _probabilities(ITEMS_P), orders.group)
    main = _pick_by_group(rng, _probabilities(PRIMARY_P), orders.group)
    companion_start = _pick(rng, COMPANION_START_P, n_orders)
    order = np.repeat(np.arange(n_orders, dtype=np.int64), per_order)
    slot = np.arange(len(order), dtype=np.int64) - np.repeat(
        np.cumsum(per_order) - per_order, per_order
    )
    del per_order
    companions = np.asarray(COMPANIONS, dtype=np.int64)
    width = companions.shape[1]
    position = (companion_start[order] + slot - 1) % width
    category = np.where(slot == 0, main[order], companions[main[order], position])
    del position, main, companion_start
    stays = (slot == 0) | (rng.random(len(order)) < SUITE_LOYALTY)
    suite = np.where(stays, orders.suite[order], _popular_suite(rng, catalog.n_suites, len(order)))
    del stays, slot
    product = (suite % catalog.suites_in_category[category]) * len(CATEGORIES) + category
    del suite
    quantity = 1 + _pick_by_group(rng, _probabilities(QUANTITY_P), category)
    return _Items(order, product, quantity, catalog.price_cents[product])


def _order_totals(items: _Items, n_orders: int) -> IntArray:
    line = (items.quantity * items.price_cents).astype(np.float64)
    return np.rint(np.bincount(items.order, weights=line, minlength=n_orders)).astype(np.int64)


# --- finishing the customers ------------------------------------------------------------------


def _created_seconds(rng: np.random.Generator, people: _People, orders: _Orders) -> IntArray:
    """Sign-up instants: never after the first order; half the buyers sign up at checkout."""
    n = len(people.created_day)
    created = people.created_day * DAY + rng.integers(0, DAY, size=n, dtype=np.int64)
    at_checkout = orders.ordered & (rng.random(n) < CHECKOUT_SIGNUP_SHARE)
    before_checkout = orders.first_s - rng.integers(30, 900, size=n, dtype=np.int64)
    created = np.where(at_checkout, before_checkout, created)
    return np.where(orders.ordered, np.minimum(created, orders.first_s), created)


def _loyalty(rng: np.random.Generator, spent_cents: IntArray) -> tuple[IntArray, IntArray]:
    """Points (about one per euro spent, part redeemed; a sign-up bonus for a few
    non-buyers) and their expiry day from reference (only meaningful for points > 0)."""
    n = len(spent_cents)
    earned = (spent_cents / 100 * rng.uniform(0.2, 1.0, n)).astype(np.int64)
    kept = rng.random(n) < 0.65
    bonus = np.where(rng.random(n) < 0.08, 100, 0)
    points = np.where(spent_cents > 0, np.where(kept, earned, 0), bonus).astype(np.int64)
    expires = rng.integers(-10, 366, size=n, dtype=np.int64)
    return points, expires


# --- tables ------------------------------------------------------------------------------------


def _ids(prefix: str, count: int, min_digits: int) -> Any:
    """``prefix`` + the zero-padded numbers 1..count (``P001``) as an Arrow string array,
    built byte by byte."""
    head = prefix.encode("ascii")
    width = len(head) + max(min_digits, len(str(count)))
    chars = np.empty((count, width), dtype=np.uint8)
    chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rest = np.arange(1, count + 1, dtype=np.uint64)
    for column in range(width - 1, len(head) - 1, -1):
        chars[:, column] = 48 + rest % 10
        rest //= 10
    large = count * width >= 2**31
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int64 if large else np.int32)
    kind = pa.large_string() if large else pa.string()
    return pa.Array.from_buffers(kind, count, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])


@dataclass(frozen=True)
class _Ids:
    """The identifiers of all customers, orders and products, in row order."""

    customer: Any
    order: Any
    product: Any

    @classmethod
    def of(cls, size: ShopSize) -> _Ids:
        return cls(
            _ids("C", size.customers, 6), _ids("O", size.orders, 7), _ids("P", size.products, 3)
        )


def _money(cents: IntArray, fmt: Format) -> Any:
    """Float euros for Parquet; exact two-decimal text for CSV."""
    if fmt == "parquet":
        return pa.array(cents / 100)
    euros = pa.array(cents // 100).cast(pa.string())
    fraction = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0")
    return pc.binary_join_element_wise(euros, fraction, ".")


def _timestamps(seconds: IntArray, reference: dt.date) -> Any:
    base = (reference - EPOCH).days * DAY
    return pa.array(seconds + base, type=pa.timestamp("s"))


def _dates(days: IntArray, reference: dt.date, missing: BoolArray) -> Any:
    base = (reference - EPOCH).days
    return pa.array((days + base).astype(np.int32), type=pa.date32(), mask=missing)


def _products_table(catalog: _Catalog, ids: _Ids, fmt: Format) -> Any:
    return pa.table(
        {
            "product_id": ids.product,
            "name": pa.array(catalog.names),
            "category": pa.array(CATEGORIES).take(pa.array(catalog.category)),
            "price": _money(catalog.price_cents, fmt),
            "url": pa.array([PRODUCT_URL + _slug(name) for name in catalog.names]),
        }
    )


def _names_and_emails(rng: np.random.Generator, people: _People) -> tuple[Any, Any, Any]:
    """First names, last names (fitting locale and gender) and e-mail addresses."""
    group = 2 * people.locale + (~people.female).astype(np.int64)
    first_pool, last_pool = _name_pools()
    first = pa.array(first_pool.draw(rng, group))
    last = pa.array(last_pool.draw(rng, group))
    first_handles = pa.array([_handle(name) for name in first_pool.names])
    last_handles = pa.array([_handle(name) for name in last_pool.names])
    emails = _emails(rng, first_handles.take(first), last_handles.take(last))
    return pa.array(first_pool.names).take(first), pa.array(last_pool.names).take(last), emails


def _customers_table(
    rng: np.random.Generator,
    people: _People,
    *,
    orders: _Orders,
    spent_cents: IntArray,
    ids: _Ids,
    reference: dt.date,
) -> Any:
    n = len(people.role)
    first_names, last_names, emails = _names_and_emails(rng, people)
    in_new_york = rng.random(n) < NEW_YORK_SHARE
    timezone = np.where(people.locale == 0, in_new_york.astype(np.int64), people.locale + 1)
    accepts = rng.random(n) < ACCEPTS_MARKETING_P
    created = _created_seconds(rng, people, orders)
    points, expires = _loyalty(rng, spent_cents)
    return pa.table(
        {
            "customer_id": ids.customer,
            "email": emails,
            "first_name": first_names,
            "last_name": last_names,
            "locale": pa.array(LOCALES).take(pa.array(people.locale)),
            "timezone": pa.array(TIMEZONES).take(pa.array(timezone)),
            "accepts_marketing": pa.array(accepts),
            "created_at": _timestamps(created, reference),
            "role": pa.array(ROLES, type=pa.string()).take(pa.array(people.role)),
            "wedding_date": _dates(people.wedding_day, reference, people.role == 0),
            "loyalty_points": pa.array(points),
            "points_expire_at": _dates(expires, reference, points == 0),
        }
    )


def _orders_table(
    orders: _Orders, totals: IntArray, ids: _Ids, reference: dt.date, fmt: Format
) -> Any:
    return pa.table(
        {
            "order_id": ids.order,
            "customer_id": ids.customer.take(pa.array(orders.customer)),
            "placed_at": _timestamps(orders.placed_s, reference),
            "total": _money(totals, fmt),
            "currency": pa.repeat(CURRENCY, len(orders.customer)),
        }
    )


def _items_table(items: _Items, ids: _Ids, fmt: Format) -> Any:
    return pa.table(
        {
            "order_id": ids.order.take(pa.array(items.order)),
            "product_id": ids.product.take(pa.array(items.product)),
            "quantity": pa.array(items.quantity),
            "unit_price": _money(items.price_cents, fmt),
        }
    )


def _write(table: Any, path: Path, fmt: Format) -> None:
    if fmt == "parquet":
        # row groups of DuckDB's own size, so a reader scans every table on all cores
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP)
        return
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with path.open("wb") as out:
        out.write((",".join(table.column_names) + "\n").encode("utf-8"))
        pacsv.write_csv(table, out, options)


# --- entry point -------------------------------------------------------------------------------


def generate_shop(
    out_dir: Path,
    *,
    reference: dt.date,
    seed: int = 7,
    size: ShopSize = DEFAULT_SIZE,
    fmt: Format = "csv",
) -> ShopFiles:
    """Write ``customers``, ``orders``, ``order_items`` and ``products`` as ``fmt`` files
    into ``out_dir`` (created if missing) and return their paths and row counts.

    The same ``seed``, ``reference``, ``size`` and ``fmt`` always give the same bytes.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use 'csv' or 'parquet'")
    if isinstance(reference, dt.datetime):
        reference = reference.date()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.{fmt}" for name in TABLES}
    rng = np.random.default_rng(seed)

    ids = _Ids.of(size)
    catalog = _make_catalog(rng, size.products)
    _write(_products_table(catalog, ids, fmt), paths["products"], fmt)
    people = _make_people(rng, size.customers, catalog.n_suites)
    orders = _make_orders(rng, people, size.orders, catalog.n_suites)
    items = _make_items(rng, orders, catalog)
    n_items = len(items.order)
    totals = _order_totals(items, size.orders)
    _write(_items_table(items, ids, fmt), paths["order_items"], fmt)
    del items
    spent = np.bincount(orders.customer, weights=totals, minlength=size.customers)
    customers = _customers_table(
        rng, people, orders=orders, spent_cents=spent.astype(np.int64), ids=ids, reference=reference
    )
    _write(customers, paths["customers"], fmt)
    del customers
    _write(_orders_table(orders, totals, ids, reference, fmt), paths["orders"], fmt)
    return ShopFiles(
        customers=paths["customers"],
        orders=paths["orders"],
        order_items=paths["order_items"],
        products=paths["products"],
        n_customers=size.customers,
        n_orders=size.orders,
        n_items=n_items,
        n_products=size.products,
    )
