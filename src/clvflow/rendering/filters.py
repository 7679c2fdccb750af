"""Filters that format money, dates and numbers for the customer's locale (Babel).

Each filter reads the locale from the template context (``locale``), so templates write
``{{ order.total | money }}`` and get ``€1,234.50``, ``1 234,50 €`` or ``1 234,50 €``.
While clvflow renders a message (``formatting``), the filters use that message's locale and
currency, also inside macros imported without context (cheaper: the module is built once,
not per message); ``money("USD")`` names another currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def formatting(locale: str | None, currency: str | None) -> Iterator[None]:
    """Format money, dates and numbers for this message while rendering it."""
    token = _MESSAGE.set((locale, currency))
    try:
        yield
    finally:
        _MESSAGE.reset(token)


def _locale(ctx: Context) -> Locale:
    # The message being rendered first: the same as the context's ``locale`` there, and a
    # context-free macro's context would only find it after a slow search of the globals.
    value = _MESSAGE.get()[0] or ctx.get("locale")
    return value if isinstance(value, Locale) else babel_locale(str(value) if value else None)


def _as_date(value: Any) -> dt.date | dt.datetime:
    if isinstance(value, dt.datetime | dt.date):
        return value
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    raise TypeError(f"cannot format {value!r} as a date")


# Formatting is pure and the same prices and dates recur across a campaign: memoize.
@lru_cache(maxsize=65536)
def _money(amount: float, code: str, locale: Locale) -> str:
    return str(format_currency(amount, code, locale=locale))


@lru_cache(maxsize=16384)
def _date(when: dt.date, pattern: str, locale: Locale) -> str:
    return str(format_date(when, format=pattern, locale=locale))


@pass_context
def money(ctx: Context, amount: Any, currency: str | None = None) -> str:
    code = currency or str(_MESSAGE.get()[1] or ctx.get("currency") or "EUR")
    return _money(float(amount), code, _locale(ctx))


@pass_context
def date(ctx: Context, value: Any, format: str = "long") -> str:
    when = _as_date(value)
    if isinstance(when, dt.datetime):
        when = when.date()
    return _date(when, format, _locale(ctx))


@pass_context
def datetime(ctx: Context, value: Any, format: str = "medium") -> str:
    when = _as_date(value)
    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time())
    return str(format_datetime(when, format=format, locale=_locale(ctx)))


@pass_context
def number(ctx: Context, value: Any, digits: int | None = None) -> str:
    fmt = None if digits is None else "#,##0." + "0" * digits if digits else "#,##0"
    return str(format_decimal(float(value), format=fmt, locale=_locale(ctx)))


@pass_context
def percent(ctx: Context, value: Any) -> str:
    return str(format_percent(float(value) / 100.0, locale=_locale(ctx)))


@pass_context
def localized(ctx: Context, by_language: Any, default: Any = None) -> Any:
    """``{"en": x, "hu": y} | localized`` → the entry for the message's locale (``hu-HU``,
    then ``hu``), else ``default``."""
    tag = str(_MESSAGE.get()[0] or ctx.get("locale") or "")
    for key in (tag, tag.replace("_", "-").split("-")[0]):
        if key in by_language:
            return by_language[key]
    return default


FILTERS: dict[str, Callable[..., Any]] = {
    "money": money,
    "date": date,
    "datetime": datetime,
    "number": number,
    "percent": percent,
    "localized": localized,
}
