"""Calls of pure macros, rendered once per distinct input.

``{% from "partials/button.html.j2" import button %}`` builds the partial's module once,
without any message's context, so what a macro of it returns depends only on its arguments,
the caller's autoescaping and the message's locale and currency (the filters read them) —
unless the partial uses something stateful or random. Such a macro's calls are memoized:
the same product card or button in the same locale is rendered once per run, not once per
message. The first call of each input still runs inside the sandbox; later ones return
its result.

A partial's macros are pure when its source uses only Jinja's own filters (except
``random``) and clvflow's, no ``lipsum``, ``cycler`` or ``joiner``, no namespace assignment,
no ``{% call %}``, and includes, imports or extends no other template; a macro that takes a
``caller`` never is. Arguments are keyed by value *and* type (``1``, ``1.0``, ``True`` and
a ``Markup`` all differ): str, int, float (not zero: ``-0.0`` equals ``0.0``), bool, None,
date, naive datetime, ``Markup``, and dicts of them. A call with any other argument (a list,
an ``Undefined``, an order object, a loop) runs as usual.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import nodes
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.runtime import Macro
from markupsafe import Markup

from clvflow.rendering.filters import FILTERS, message_format

PURE_FILTERS = frozenset(JINJA_FILTERS) - {"random"} | frozenset(FILTERS)
IMPURE_NAMES = frozenset({"lipsum", "cycler", "joiner"})
_STATEFUL = (
    nodes.NSRef,
    nodes.CallBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
)
_LEAVES = frozenset({str, int, bool, type(None), dt.date, Markup})
_FLAT = _LEAVES | {float}
_RUNTIME = frozenset({"_block_vars", "_loop_vars"})  # passed by Jinja, unused by macros
LIMIT = 8192  # results kept per environment before the memo starts afresh


class _UnkeyableError(Exception):
    """An argument that cannot be part of a memo key."""


def is_pure(tree: nodes.Template) -> bool:
    """Whether the macros of a template module built without context are pure."""
    if any(True for _ in tree.find_all(_STATEFUL)):
        return False
    if any(f.name not in PURE_FILTERS for f in tree.find_all(nodes.Filter)):
        return False
    return not any(n.name in IMPURE_NAMES for n in tree.find_all(nodes.Name))


def _leaf(value: Any) -> Any:
    kind = type(value)
    if kind in _LEAVES:
        return (kind, value)
    if kind is float and value:
        return (float, value)
    if kind is dt.datetime and value.tzinfo is None:
        return (kind, value)
    raise _UnkeyableError


def freeze(value: Any) -> Any:
    """A hashable key for ``value``, equal only for values that render alike: a leaf, or a
    dict of leaves (a product, say). Lists are not keyed: a list argument (the products of
    a grid) is mostly different per customer, so keying it would cost more than it saves."""
    kind = type(value)
    if kind is dict:
        values = tuple(value.values())
        types = tuple(map(type, values))
        keys = tuple(value)
        flat = _FLAT.issuperset(types) and _LEAVES.issuperset(map(type, keys))
        if flat and not (float in types and 0 in values):
            return (keys, values, types)
        return tuple((_leaf(k), _leaf(v)) for k, v in value.items())
    return _leaf(value)


class MacroMemo:
    """The pure macros of one environment and the results of their calls."""

    def __init__(self) -> None:
        self.macros: set[Macro] = set()
        self.results: dict[Any, str] = {}

    def register(self, tree: nodes.Template, exported: dict[str, Any]) -> None:
        """Record the macros of a module built once without context, if its source is pure."""
        if not is_pure(tree):
            return
        for value in exported.values():
            if type(value) is Macro and not value.caller:
                self.macros.add(value)

    def key(self, macro: Macro, autoescape: bool, args: Any, kwargs: dict[str, Any]) -> Any:
        """The memo key of a call, or None when an argument cannot be keyed."""
        if kwargs and not _RUNTIME.issuperset(kwargs):
            try:
                named = tuple(
                    (k, freeze(v)) for k, v in sorted(kwargs.items()) if k not in _RUNTIME
                )
            except _UnkeyableError:
                return None
        else:
            named = ()
        types = tuple(map(type, args))
        if _LEAVES.issuperset(types):  # the common case: a button's URL and label
            return (macro, autoescape, message_format(), args, types, named)
        try:
            frozen = tuple(freeze(a) for a in args)
        except _UnkeyableError:
            return None
        return (macro, autoescape, message_format(), frozen, named)

    def remember(self, key: Any, result: Any) -> None:
        if type(result) is Markup or type(result) is str:
            if len(self.results) >= LIMIT:
                self.results.clear()
            self.results[key] = result
