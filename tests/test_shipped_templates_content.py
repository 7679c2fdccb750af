"""The templates shipped in templates/ render for every locale with realistic data.

Each campaign template has an English base file and Hungarian and Russian variants; these
tests render all of them through the real TemplateLibrary and render_email (sandbox,
autoescape, StrictUndefined, Babel filters, CSS inlining, derived text part) and check what
a shop would care about: subjects, compliance footer, escaping, localized amounts and dates,
and that missing optional data never breaks a render.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from clvflow.rendering.linked import link_parts
from clvflow.rendering.render import RenderedEmail, check_compliance, render_email
from clvflow.rendering.templates import TemplateLibrary

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

NAMES = [
    "thank_you",
    "win_back",
    "vip_thanks",
    "wedding_save_the_dates",
    "wedding_invitations",
    "wedding_day_of",
    "wedding_thank_you_cards",
    "points_expiry",
    "feedback_request",
]
# The steps of the lifecycle journeys: cross-sell after an order, the win-back reminder and
# the win-back last chance (templates no single campaign uses).
JOURNEY = ["cross_sell", "win_back_reminder", "win_back_last"]
SHIPPED_NAMES = NAMES + JOURNEY
WEDDING = [n for n in NAMES if n.startswith("wedding_")]
LOCALES = ["en", "hu", "ru"]

# Typical (and longish) first names of the demo shop's customers.
FIRST_NAMES = {"en": "Charlotte", "hu": "Zsófia", "ru": "Анастасия"}
# Words that only the locale's own files (and its footer) contain.
MARKERS = {
    "en": ["Dear ", "Unsubscribe here"],
    "hu": ["Kedves ", "leiratkozhatsz"],
    "ru": ["Здравствуйте", "Отписаться от рассылки"],
}
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
HUNGARIAN_ONLY = re.compile(r"[őűŐŰ]")

SHOP = {
    "name": "Paper & Vows",
    "url": "https://paperandvows.example",
    "email": "hello@paperandvows.example",
    "postal_address": "Paper & Vows Ltd, 14 Linden Court, London N1 7AB, United Kingdom",
    "currency": "EUR",
}
UNSUBSCRIBE = (
    "https://mail.paperandvows.example/unsubscribe/QzEwMDEfd2luX2JhY2s.Jx9kT2vQ?src=email&v=1"
)


def make_context(locale: str, **customer_overrides: Any) -> dict[str, Any]:
    """A couple customer planning a wedding, with an order, recommendations and a promo."""
    customer: dict[str, Any] = {
        "customer_id": "C-10482",
        "email": "customer@example.com",
        "first_name": FIRST_NAMES[locale],
        "last_name": {"en": "Walker", "hu": "Kovács", "ru": "Смирнова"}[locale],
        "locale": locale,
        "timezone": {"en": "Europe/London", "hu": "Europe/Budapest", "ru": "Europe/Moscow"}[locale],
        "accepts_marketing": True,
        "created_at": dt.datetime(2024, 3, 1, 10, 12),
        "role": "couple",
        "wedding_date": dt.date(2026, 9, 12),
        "loyalty_points": 1250,
        "points_expire_at": dt.datetime(2026, 2, 28, 23, 59, 59),
        "orders_count": 12,
        "total_spent": 1830.4,
        "avg_order_value": 152.53,
        "first_order_at": dt.datetime(2024, 3, 2, 19, 40),
        "last_order_at": dt.datetime(2026, 1, 14, 18, 5),
        "days_since_first_order": 684,
        "days_since_last_order": 1,
        "rfm_recency": 5,
        "rfm_frequency": 5,
        "rfm_monetary": 5,
        "rfm_segment": "champions",
        "historical_clv": 1830.4,
        "last_order_id": "O-20931",
    }
    customer.update(customer_overrides)
    order = {
        "order_id": "O-20931",
        "placed_at": dt.datetime(2026, 1, 14, 18, 5),
        "total": 1234.5,
        "currency": "EUR",
        "items": [
            {
                "product_id": "P-11",
                "name": "Gold Foil Invitation Suite",
                "quantity": 2,
                "unit_price": 59.9,
                "url": "https://shop.example/p/gold-foil-invitation-suite",
            },
            {
                "product_id": "P-14",
                "name": "Botanical Menu Cards",
                "quantity": 3,
                "unit_price": 24.9,
                "url": None,
            },
        ],
    }
    recommendations = [
        {
            "product_id": "P-12",
            "name": "Gold Foil Place Cards",
            "category": "place-cards",
            "price": 14.9,
            "url": "https://shop.example/p/gold-foil-place-cards",
        },
        {
            "product_id": "P-19",
            "name": "Eucalyptus Gift Wrap",
            "category": "gift-wrap",
            "price": 12.0,
            "url": None,
        },
    ]
    promo = {
        "code": "WB-7KQ2-M9XD",
        "discount_percent": 15,
        "min_order": 50.0,
        "currency": "EUR",
        "expires_at": dt.datetime(2026, 2, 14, 23, 59, 59),
    }
    return {
        "customer": customer,
        "shop": dict(SHOP),
        "campaign": {"name": "demo", "occurrence": "2026-01-15"},
        "order": order,
        "recommendations": recommendations,
        "promo": promo,
        "unsubscribe_url": UNSUBSCRIBE,
        "locale": locale,
        "currency": "EUR",
        "now": dt.datetime(2026, 1, 15, 9, 30),
    }


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(TEMPLATES, "en")


def render(library: TemplateLibrary, name: str, context: dict[str, Any]) -> RenderedEmail:
    email = render_email(library.get(name, context["locale"]), context)
    check_compliance(email, UNSUBSCRIBE, SHOP["postal_address"], name)
    return email


def plain(markup: str) -> str:
    """HTML with no-break spaces (Babel puts them in amounts and dates) as plain spaces."""
    return markup.replace("&nbsp;", " ").replace("\xa0", " ").replace("\u202f", " ")


# Amounts and dates as Babel formats them for each locale.
MONEY = {
    "en": {"total": "€1,234.50", "unit": "€59.90", "reco": "€14.90", "min": "€50.00"},
    "hu": {"total": "1 234,50 EUR", "unit": "59,90 EUR", "reco": "14,90 EUR", "min": "50,00 EUR"},
    "ru": {"total": "1 234,50 €", "unit": "59,90 €", "reco": "14,90 €", "min": "50,00 €"},
}
DATES = {
    "en": {
        "wedding": "September 12, 2026",
        "promo": "February 14, 2026",
        "points": "February 28, 2026",
        "order": "January 14, 2026",
    },
    "hu": {
        "wedding": "2026. szeptember 12.",
        "promo": "2026. február 14.",
        "points": "2026. február 28.",
        "order": "2026. január 14.",
    },
    "ru": {
        "wedding": "12 сентября 2026 г.",
        "promo": "14 февраля 2026 г.",
        "points": "28 февраля 2026 г.",
        "order": "14 января 2026 г.",
    },
}


def test_every_template_has_english_hungarian_and_russian_files(library: TemplateLibrary) -> None:
    assert set(SHIPPED_NAMES) <= set(library.names())
    for name in SHIPPED_NAMES:
        assert library.locales_of(name) == ["hu", "ru"]
        for suffix in (".html.j2", ".hu.html.j2", ".ru.html.j2"):
            path = TEMPLATES / f"{name}{suffix}"
            assert path.read_text(encoding="utf-8").splitlines()[0] == "---", path
    # The text part is derived from the HTML; no hand-written text parts are shipped.
    assert not list(TEMPLATES.rglob("*.txt.j2"))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_renders_a_compliant_localized_email(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    template = library.get(name, locale)
    expected_file = f"{name}.html.j2" if locale == "en" else f"{name}.{locale}.html.j2"
    assert template.html_path.name == expected_file
    assert template.front.kind == "marketing"

    email = render(library, name, make_context(locale))

    first_name = FIRST_NAMES[locale]
    assert email.subject
    assert len(email.subject) <= 70, email.subject
    assert "\r" not in email.subject and "\n" not in email.subject
    assert first_name in email.subject
    assert email.subject == email.subject.strip() and "!!" not in email.subject
    assert not any(word.isupper() and len(word) > 4 for word in email.subject.split())
    assert email.preheader

    html = email.html
    assert f'<html lang="{locale}"' in html
    assert "<style" not in html
    assert "&lt;" not in html  # nothing double-escaped
    assert 'href="https://mail.paperandvows.example/unsubscribe/' in html
    assert "Paper &amp; Vows Ltd, 14 Linden Court, London N1 7AB, United Kingdom" in html
    assert first_name in html
    for marker in MARKERS[locale]:
        assert marker in html, marker
    for other in set(LOCALES) - {locale}:
        assert MARKERS[other][0] not in html
    if locale == "ru":
        assert CYRILLIC.search(email.subject) and CYRILLIC.search(html)
    else:
        assert not CYRILLIC.search(html.replace(first_name, ""))
    if locale == "hu":
        assert HUNGARIAN_ONLY.search(html)

    # The derived text part keeps headings, paragraphs and links, and no layout-table debris.
    text = email.text
    assert f"# {MARKERS[locale][0]}" in text and first_name in text
    assert UNSUBSCRIBE in text
    lines = text.splitlines()
    assert "---" not in lines and not any(line.startswith("| ") for line in lines)
    assert "None" not in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_a_hostile_first_name_is_escaped(library: TemplateLibrary, name: str, locale: str) -> None:
    hostile = "<script>alert(1)</script>"
    email = render(library, name, make_context(locale, first_name=hostile))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script" not in email.html.lower()
    # The subject is a plain-text header: not HTML-escaped, but still one line.
    assert hostile in email.subject and "\n" not in email.subject


@pytest.mark.parametrize("locale", LOCALES)
def test_thank_you_summarizes_the_order_and_recommends_products(
    library: TemplateLibrary, locale: str
) -> None:
    email = render(library, "thank_you", make_context(locale))
    html = plain(email.html)
    for item in ("Gold Foil Invitation Suite", "Botanical Menu Cards"):
        assert item in html
    assert ">2</td>" in html and ">3</td>" in html
    assert "O-20931" in html
    assert MONEY[locale]["unit"] in html
    assert MONEY[locale]["total"] in html
    # The upsell block with both recommendations, prices formatted for the locale.
    assert "Gold Foil Place Cards" in html and "Eucalyptus Gift Wrap" in html
    assert MONEY[locale]["reco"] in html
    heading = {
        "en": "Customers who bought this also bought",
        "hu": "Akik ezt vásárolták",
        "ru": "Вместе с этим часто покупают",
    }[locale]
    assert heading in html
    # Category slugs are shown with a localized label.
    label = {"en": "Place cards", "hu": "Ültetőkártyák", "ru": "Карточки рассадки"}[locale]
    assert label in html


@pytest.mark.parametrize("locale", LOCALES)
def test_thank_you_without_recommendations_has_no_upsell_block(
    library: TemplateLibrary, locale: str
) -> None:
    context = make_context(locale)
    context["recommendations"] = []
    html = render(library, "thank_you", context).html
    assert "Gold Foil Invitation Suite" in html
    assert 'class="products"' not in html


def test_money_is_formatted_for_the_locale(library: TemplateLibrary) -> None:
    en, hu, ru = (plain(render(library, "thank_you", make_context(loc)).html) for loc in LOCALES)
    assert "€1,234.50" in en
    assert re.search(r"1 234,50 EUR", hu)  # Babel puts the ISO code after the number for hu
    assert re.search(r"1 234,50 €", ru)
    assert "€1,234.50" not in hu and "€1,234.50" not in ru


@pytest.mark.parametrize("locale", LOCALES)
def test_win_back_shows_the_promo_code(library: TemplateLibrary, locale: str) -> None:
    email = render(library, "win_back", make_context(locale))
    html = plain(email.html)
    assert "WB-7KQ2-M9XD" in html
    percent = {"en": "15%", "hu": "15%", "ru": "15 %"}[locale]
    assert percent in html and percent in plain(email.subject)
    assert MONEY[locale]["min"] in html
    assert DATES[locale]["promo"] in html


@pytest.mark.parametrize("locale", LOCALES)
def test_win_back_without_a_promo_still_reads_well(library: TemplateLibrary, locale: str) -> None:
    context = make_context(locale)
    context["promo"] = None
    email = render(library, "win_back", context)
    assert "WB-7KQ2-M9XD" not in email.html
    assert "%" not in email.subject
    assert 'class="button"' in email.html


@pytest.mark.parametrize("locale", LOCALES)
def test_vip_thanks_mentions_the_orders_and_offers_no_discount(
    library: TemplateLibrary, locale: str
) -> None:
    email = render(library, "vip_thanks", make_context(locale))
    words = {"en": "12 orders", "hu": "12 alkalommal", "ru": "12 заказов"}[locale]
    assert words in email.text
    assert "WB-7KQ2-M9XD" not in email.html  # even though the context has a promo
    for text in (email.subject, email.text):
        assert "%" not in text
        assert not re.search(r"discount|% off|kedvezmény|скидк", text, re.IGNORECASE)


@pytest.mark.parametrize(
    ("count", "words"), [(21, "21 заказ "), (3, "3 заказа "), (11, "11 заказов ")]
)
def test_russian_order_counts_take_the_right_plural(
    library: TemplateLibrary, count: int, words: str
) -> None:
    email = render(library, "vip_thanks", make_context("ru", orders_count=count))
    assert words in email.text


@pytest.mark.parametrize(
    ("points", "words"),
    [(1, "1 бонусный балл"), (22, "22 бонусных балла"), (1250, "1 250 бонусных баллов")],
)
def test_russian_points_take_the_right_plural(
    library: TemplateLibrary, points: int, words: str
) -> None:
    email = render(library, "points_expiry", make_context("ru", loyalty_points=points))
    assert words in plain(email.html)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", WEDDING)
def test_wedding_templates_show_the_wedding_date(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    html = render(library, name, make_context(locale)).html
    if name != "wedding_thank_you_cards":  # the date is past there; no countdown card
        assert DATES[locale]["wedding"] in plain(html)


BRIDESMAID = {"en": "help the couple", "hu": "koszorúslányként", "ru": "подружка невесты"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    "name", ["wedding_save_the_dates", "wedding_invitations", "wedding_day_of"]
)
def test_one_sentence_is_tailored_to_a_bridesmaid(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    couple = render(library, name, make_context(locale, role="couple")).text
    bridesmaid = render(library, name, make_context(locale, role="bridesmaid")).text
    marker = BRIDESMAID[locale]
    if name == "wedding_invitations" and locale == "ru":
        marker = "помочь паре"
    if name == "wedding_day_of" and locale == "en":
        marker = "a bridesmaid can be a real help to the couple"
    assert marker.lower() in bridesmaid.lower()
    assert marker.lower() not in couple.lower()


@pytest.mark.parametrize("locale", LOCALES)
def test_points_expiry_shows_the_balance_and_the_expiry_date(
    library: TemplateLibrary, locale: str
) -> None:
    email = render(library, "points_expiry", make_context(locale))
    html = plain(email.html)
    assert {"en": "1,250", "hu": "1 250", "ru": "1 250"}[locale] in html
    assert DATES[locale]["points"] in html


REVIEW = {"en": "Write a review", "hu": "Értékelés írása", "ru": "Написать отзыв"}


@pytest.mark.parametrize("locale", LOCALES)
def test_feedback_request_links_a_review_for_every_item_and_sells_nothing(
    library: TemplateLibrary, locale: str
) -> None:
    email = render(library, "feedback_request", make_context(locale))
    html = plain(email.html)
    label = REVIEW[locale]
    # each item with its own review link; an item without a page links to the shop
    links = re.findall(r'<li[^>]*>([^<:]+): <a [^>]*href="([^"]+)"[^>]*>' + label, html)
    assert links == [
        ("Gold Foil Invitation Suite", "https://shop.example/p/gold-foil-invitation-suite"),
        ("Botanical Menu Cards", SHOP["url"]),
    ]
    assert "O-20931" in html and "O-20931" in (email.preheader or "")
    assert DATES[locale]["order"] in html
    # a request for an opinion: no products pushed, no prices, no discount
    assert "Gold Foil Place Cards" not in html and 'class="products"' not in html
    assert MONEY[locale]["unit"] not in html and "%" not in email.subject


@pytest.mark.parametrize("locale", LOCALES)
def test_feedback_request_without_an_order_asks_for_a_review_of_the_shop(
    library: TemplateLibrary, locale: str
) -> None:
    context = make_context(locale)
    context["order"] = None
    email = render(library, "feedback_request", context)
    label = REVIEW[locale]
    button = re.search(r'<a [^>]*class="button" href="([^"]+)">(.*?)</a>', email.html)
    assert button and button.group(1) == SHOP["url"] and label in button.group(2)
    assert "<li" not in email.html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_missing_optional_data_never_breaks_a_render(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    """A customer without name, role, wedding, points or orders; no order, promo or products."""
    context = make_context(
        locale,
        first_name=None,
        role=None,
        wedding_date=None,
        loyalty_points=None,
        points_expire_at=None,
        orders_count=None,
        first_order_at=None,
        last_order_at=None,
        last_order_id=None,
    )
    context.update(order=None, promo=None, recommendations=[])
    email = render(library, name, context)
    assert email.subject and email.subject[0].isupper()
    assert not email.subject.startswith(",")
    assert "None" not in email.subject and "None" not in email.text
    assert "None" not in (email.preheader or "")


@pytest.mark.parametrize(
    ("locale", "file"), [("en-GB", "thank_you.html.j2"), ("hu-HU", "thank_you.hu.html.j2")]
)
def test_regional_locales_use_the_language_file(
    library: TemplateLibrary, locale: str, file: str
) -> None:
    template = library.get("thank_you", locale)
    assert template.html_path.name == file
    context = make_context(locale[:2])
    context["locale"] = locale
    email = render_email(template, context)
    assert f'<html lang="{locale}"' in email.html
    check_compliance(email, UNSUBSCRIBE, SHOP["postal_address"], "thank_you")


# The journey steps, each rendered with and without a promo, recommendations and order items.
CODE = "WB-7KQ2-M9XD"
BOUGHT = ["Gold Foil Invitation Suite", "Botanical Menu Cards"]
RECOMMENDED = ["Gold Foil Place Cards", "Eucalyptus Gift Wrap"]
# What a customer without a code must not read about one (in the subject and the text part).
CODE_WORDS = {
    "en": re.compile(r"\bcodes?\b|% off|discount", re.IGNORECASE),
    "hu": re.compile(r"kupon|kedvezmény", re.IGNORECASE),
    "ru": re.compile(r"промокод|скидк", re.IGNORECASE),
}
# Words of each step in its own language, with a promo and without one.
STEP_WORDS = {
    ("cross_sell", True): {"en": "Complete the set", "hu": "szettet", "ru": "комплект"},
    ("cross_sell", False): {"en": "Complete the set", "hu": "szettet", "ru": "комплект"},
    ("win_back_reminder", True): {"en": "expires on", "hu": "lejár", "ru": "действует до"},
    ("win_back_reminder", False): {"en": "still miss you", "hu": "hiányzol", "ru": "скучаем"},
    ("win_back_last", True): {"en": "last gift", "hu": "utolsó ajándék", "ru": "последний подарок"},
    ("win_back_last", False): {"en": "last note", "hu": "utolsó levél", "ru": "последнее письмо"},
}


def journey_context(
    locale: str, name: str, *, promo: bool, recommendations: bool, items: bool
) -> dict[str, Any]:
    context = make_context(locale)
    if name == "cross_sell":
        context["promo"] = None  # the cross-sell step hands out no code
    if name == "win_back_last":
        context["promo"]["discount_percent"] = 20  # a new, stronger code
    if not promo:
        context["promo"] = None
    if not recommendations:
        context["recommendations"] = []
    if not items:
        context["order"]["items"] = []
    return context


@pytest.mark.parametrize("items", [True, False], ids=["items", "no-items"])
@pytest.mark.parametrize("recommendations", [True, False], ids=["recos", "no-recos"])
@pytest.mark.parametrize("promo", [True, False], ids=["promo", "no-promo"])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", JOURNEY)
def test_journey_steps_show_what_the_customer_needs(
    library: TemplateLibrary,
    name: str,
    locale: str,
    promo: bool,
    recommendations: bool,
    items: bool,
) -> None:
    context = journey_context(
        locale, name, promo=promo, recommendations=recommendations, items=items
    )
    if name == "cross_sell" and promo:
        context["promo"] = make_context(locale)["promo"]  # handled if a journey adds one
    email = render(library, name, context)
    html, text = plain(email.html), plain(email.text)

    # subject and preheader
    assert email.subject and len(email.subject) <= 70, email.subject
    assert FIRST_NAMES[locale] in email.subject
    assert email.preheader and "None" not in email.preheader

    # the code and its expiry date, or no word of a code at all
    if promo:
        assert CODE in html and CODE in text
        assert DATES[locale]["promo"] in html
        assert MONEY[locale]["min"] in html
    else:
        assert CODE not in html
        assert 'class="promo-code"' not in email.html
        assert "%" not in email.subject and "%" not in text
        assert not CODE_WORDS[locale].search(email.subject + "\n" + text)

    # the recommendations: names, links and prices, or no grid at all
    if recommendations:
        assert 'class="products"' in email.html
        for product in RECOMMENDED:
            assert product in html
        assert 'href="https://shop.example/p/gold-foil-place-cards"' in html
        assert MONEY[locale]["reco"] in html
    else:
        assert 'class="products"' not in email.html
        assert not any(product in html for product in RECOMMENDED)

    # cross-sell names what was bought; the win-back steps do not dwell on an old order
    if name == "cross_sell":
        assert DATES[locale]["order"] in html
        for item in BOUGHT:
            assert (item in html) is items and (item in text) is items
        assert (BOUGHT[0] in email.preheader) is items
    else:
        assert not any(item in html for item in BOUGHT)

    # the compliance footer, the language of the step, nothing left blank
    assert 'href="https://mail.paperandvows.example/unsubscribe/' in email.html
    assert "Paper &amp; Vows Ltd, 14 Linden Court, London N1 7AB, United Kingdom" in email.html
    assert UNSUBSCRIBE in text and SHOP["postal_address"] in text
    words = STEP_WORDS[(name, promo)]
    assert words[locale].lower() in (email.subject + "\n" + text).lower()
    for other in set(LOCALES) - {locale}:
        assert words[other].lower() not in text.lower()
    if locale == "ru":
        assert CYRILLIC.search(email.subject) and CYRILLIC.search(text)
    if locale == "hu":
        assert HUNGARIAN_ONLY.search(text)
    assert "None" not in text and 'class="button"' in email.html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", JOURNEY)
def test_journey_steps_keep_their_paragraphs_in_the_text_part(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    """Every paragraph of the HTML is a paragraph of its own in the derived text part."""
    for promo in (True, False):
        context = journey_context(locale, name, promo=promo, recommendations=True, items=True)
        email = render(library, name, context)
        paragraphs = re.findall(
            r"<p>(.*?)</p>", library.get(name, locale).html_path.read_text(encoding="utf-8")
        )
        assert paragraphs
        first_words = [p.split("{")[0].split("<")[0].strip() for p in paragraphs]
        for words in filter(None, first_words):
            if words in email.text:
                assert f"\n\n{words}" in email.text, words


@pytest.mark.parametrize("locale", LOCALES)
def test_cross_sell_names_two_items_and_the_rest_of_a_bigger_order(
    library: TemplateLibrary, locale: str
) -> None:
    context = journey_context(locale, "cross_sell", promo=False, recommendations=True, items=True)
    third = {
        "product_id": "P-15",
        "name": "Botanical Table Numbers",
        "quantity": 1,
        "unit_price": 16.9,
        "url": None,
    }
    context["order"]["items"].append(third)
    text = render(library, "cross_sell", context).text
    rest = {"en": "everything else", "hu": "többi darabja", "ru": "всё остальное"}[locale]
    assert BOUGHT[0] in text and BOUGHT[1] in text and rest in text
    assert third["name"] not in text

    context["order"]["items"] = context["order"]["items"][:1]
    text = render(library, "cross_sell", context).text
    assert BOUGHT[0] in text and BOUGHT[1] not in text and rest not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_cross_sell_without_an_order_or_products_still_reads_well(
    library: TemplateLibrary, locale: str
) -> None:
    context = journey_context(locale, "cross_sell", promo=False, recommendations=False, items=False)
    context["order"] = None
    email = render(library, "cross_sell", context)
    assert FIRST_NAMES[locale] in email.subject
    assert "O-20931" not in email.html and DATES[locale]["order"] not in plain(email.html)
    assert 'class="products"' not in email.html and 'class="button"' in email.html
    assert "None" not in email.text and "None" not in (email.preheader or "")


@pytest.mark.parametrize("locale", LOCALES)
def test_win_back_reminder_subject_names_the_expiry_date(
    library: TemplateLibrary, locale: str
) -> None:
    context = journey_context(
        locale, "win_back_reminder", promo=True, recommendations=True, items=True
    )
    email = render(library, "win_back_reminder", context)
    percent = {"en": "15%", "hu": "15%", "ru": "15 %"}[locale]
    assert percent in plain(email.subject)
    if locale != "hu":  # Hungarian puts the date in the preheader: "… napjáig"
        assert DATES[locale]["promo"] in plain(email.subject)
    assert DATES[locale]["promo"] in plain(email.subject + (email.preheader or ""))


@pytest.mark.parametrize("locale", LOCALES)
def test_win_back_last_offers_the_new_code_once(library: TemplateLibrary, locale: str) -> None:
    context = journey_context(locale, "win_back_last", promo=True, recommendations=True, items=True)
    email = render(library, "win_back_last", context)
    percent = {"en": "20%", "hu": "20%", "ru": "20 %"}[locale]
    assert percent in plain(email.subject) and percent in plain(email.html)
    assert email.html.count('class="promo-code"') == 1
    assert DATES[locale]["promo"] in plain(email.preheader or "")
    # a clear last chance, not a shouting one
    assert "!" not in email.subject
    assert not any(word.isupper() and len(word) > 1 for word in email.subject.split())


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", JOURNEY)
def test_journey_steps_link_and_render_the_same(
    library: TemplateLibrary, name: str, locale: str
) -> None:
    """Campaign runs send the template linked into one: it must read as the file does."""
    template = library.get(name, locale)
    contexts = [
        journey_context(locale, name, promo=promo, recommendations=recos, items=items)
        for promo in (True, False)
        for recos in (True, False)
        for items in (True, False)
    ]
    no_order = journey_context(locale, name, promo=False, recommendations=False, items=False)
    no_order["order"] = None
    for context in [*contexts, no_order]:
        linked = link_parts(
            template.html,
            template.text,
            context["locale"],
            context["shop"],
            (template.subject.environment, template.head_source, template.preheader is not None),
        )
        assert linked.applies(context)
        assert linked.reads_items is (name == "cross_sell")
        assert render_email(template, context, linked) == render_email(template, context)
        subject, _, html, text = linked.render(context)  # linked, not the fallback
        assert subject and html.count("<html") == 1 and text


@pytest.mark.parametrize("locale", LOCALES)
def test_thank_you_thanks_a_repeat_buyer_for_this_order_not_a_first(
    library: TemplateLibrary, locale: str
) -> None:
    """The post-purchase journey thanks every order: "first order" only for the first."""
    first = {"en": "first order", "hu": "első rendelés", "ru": "первый заказ"}[locale]
    once = render(library, "thank_you", make_context(locale, orders_count=1))
    again = render(library, "thank_you", make_context(locale, orders_count=3))
    assert first in once.subject and first in plain(once.html)
    assert first not in again.subject and first not in plain(again.html)
    assert FIRST_NAMES[locale] in again.subject
