"""Filters that format money, dates and numbers for the customer's locale (Babel).

Each filter reads the locale from the template context (``locale``), so templates write
``{{ order.total | money }}`` and get ``€1,234.50``, ``1 234,50 €`` or ``1 234,50 €``.
While clvflow renders a message (``formatting``), the filters use that message's locale and
currency, also inside macros imported without context (whose module is built once, not per
message); ``money("USD")`` names another currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import pass_context
from jinja2.runtime import Context


@lru_cache(maxsize=256)
def babel_locale(tag: str | None, default: str = "en") -> Locale:
    """A Babel locale for a BCP 47 tag (``hu``, ``en-GB``, ``pt_BR``), else ``default``."""
    for candidate in (tag, default, "en"):
        if not candidate:
            continue
        try:
            return Locale.parse(candidate.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale("en")


# (locale, currency) of the message being rendered, for filters in context-free macros.
_MESSAGE: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "clvflow_message_format", default=(None, None)
)


class formatting:  # noqa: N801 (used as a function: ``with formatting(locale, currency):``)
    """Format money, dates and numbers for this message while rendering it."""

    __slots__ = ("_token", "_value")

    def __init__(self, locale: Any, currency: str | None) -> None:
        self._value = (_normal(locale), currency)

    def __enter__(self) -> None:
        self._token = _MESSAGE.set(self._value)

    def __exit__(self, *exc: object) -> None:
        _MESSAGE.reset(self._token)


# (locale, currency) of the message being rendered, ``(None, None)`` outside one.
message_format = _MESSAGE.get


def _normal(value: Any) -> Any:
    """A locale tag as the filters key it: a str or Locale, None when empty."""
    if not value:
        return None
    return value if isinstance(value, str | Locale) else str(value)


def _tag(ctx: Context) -> str | Locale | None:
    """The locale to format for: the message being rendered first (the same as the
    context's ``locale`` there; a context-free macro's context would only find it after a
    slow search of the globals)."""
    return _MESSAGE.get()[0] or _normal(ctx.get("locale"))


def _as_date(value: Any) -> dt.date | dt.datetime:
    if isinstance(value, dt.datetime | dt.date):
        return value
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    raise TypeError(f"cannot format {value!r} as a date")


# Formatting is pure and the same prices, percentages and dates recur across a campaign:
# memoized by (value, format, locale tag), bounded. Zero is formatted afresh each time
# (-0.0 equals 0.0 but formats as "-€0.00").
def _key_locale(tag: str | Locale | None) -> Locale:
    return tag if isinstance(tag, Locale) else babel_locale(tag)


@lru_cache(maxsize=65536)
def _money(amount: float, code: str, tag: str | Locale | None) -> str:
    return str(format_currency(amount, code, locale=_key_locale(tag)))


@lru_cache(maxsize=16384)
def _date(when: dt.date, pattern: str, tag: str | Locale | None) -> str:
    return str(format_date(when, format=pattern, locale=_key_locale(tag)))


@lru_cache(maxsize=16384)
def _datetime(when: dt.datetime, pattern: str, tag: str | Locale | None) -> str:
    return str(format_datetime(when, format=pattern, locale=_key_locale(tag)))


@lru_cache(maxsize=16384)
def _number(value: float, pattern: str | None, tag: str | Locale | None) -> str:
    return str(format_decimal(value, format=pattern, locale=_key_locale(tag)))


@lru_cache(maxsize=4096)
def _percent(value: float, tag: str | Locale | None) -> str:
    return str(format_percent(value / 100.0, locale=_key_locale(tag)))


@pass_context
def money(ctx: Context, amount: Any, currency: str | None = None) -> str:
    locale, current = _MESSAGE.get()
    code = currency or str(current or ctx.get("currency") or "EUR")
    value = float(amount)
    tag = locale or _normal(ctx.get("locale"))
    return _money(value, code, tag) if value else _money.__wrapped__(value, code, tag)


@pass_context
def date(ctx: Context, value: Any, format: str = "long") -> str:
    kind = type(value)
    if kind is dt.date:
        when = value
    elif kind is dt.datetime:
        when = value.date()
    else:
        found = _as_date(value)
        when = found.date() if isinstance(found, dt.datetime) else found
    return _date(when, format, _MESSAGE.get()[0] or _normal(ctx.get("locale")))


@pass_context
def datetime(ctx: Context, value: Any, format: str = "medium") -> str:
    when = _as_date(value)
    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time())
    if when.tzinfo is not None:  # equal instants in other zones format differently
        return _datetime.__wrapped__(when, format, _tag(ctx))
    return _datetime(when, format, _tag(ctx))


@pass_context
def number(ctx: Context, value: Any, digits: int | None = None) -> str:
    fmt = None if digits is None else "#,##0." + "0" * digits if digits else "#,##0"
    amount = float(value)
    if not amount:
        return _number.__wrapped__(amount, fmt, _tag(ctx))
    return _number(amount, fmt, _tag(ctx))


@pass_context
def percent(ctx: Context, value: Any) -> str:
    amount = float(value)
    if not amount:
        return _percent.__wrapped__(amount, _tag(ctx))
    return _percent(amount, _tag(ctx))


def pick_language(by_language: Any, locale: Any, default: Any = None) -> Any:
    """The entry of ``by_language`` for ``locale`` (``hu-HU``, then ``hu``), else
    ``default``."""
    tag = str(locale or "")
    for key in (tag, tag.replace("_", "-").split("-")[0]):
        if key in by_language:
            return by_language[key]
    return default


@pass_context
def localized(ctx: Context, by_language: Any, default: Any = None) -> Any:
    """``{"en": x, "hu": y} | localized`` → the entry for the message's locale (``hu-HU``,
    then ``hu``), else ``default``."""
    return pick_language(by_language, _MESSAGE.get()[0] or ctx.get("locale"), default)


FILTERS: dict[str, Callable[..., Any]] = {
    "money": money,
    "date": date,
    "datetime": datetime,
    "number": number,
    "percent": percent,
    "localized": localized,
}
