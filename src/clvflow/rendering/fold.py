"""Constants folded into a linked template: ``locale`` and the shop's values.

A campaign run renders each (template, locale) for one shop, so ``{{ shop.name }}`` and
``{{ locale }}`` are the same in every message: folded into constants, Jinja joins them
with the text around them at compile time (no lookup, no escaping per message), and an
``{% if locale[:2] == "hu" %}`` chain keeps only the branch taken. A name the template
assigns anywhere is not folded. ``x | localized`` of a constant ``x`` (the product grid's
category labels) is picked for the locale once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment
from jinja2.nodes import EvalContext
from jinja2.visitor import NodeTransformer

from clvflow.rendering.filters import FILTERS, pick_language
from clvflow.rendering.trees import assigned_names

_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()
_DICT_ATTRIBUTES = frozenset(dir(dict))


def fold(
    env: Environment,
    name: str,
    tree: nodes.Template,
    constants: Mapping[str, Any],
    hidden: dict[str, Any],
    prefix: str,
) -> nodes.Template:
    """``locale`` and ``shop.<key>`` (from ``constants``) as constants where the template
    never assigns them; ``x | localized`` of a constant ``x`` picked for the locale;
    ``{% if %}`` on constants reduced to the branch taken."""
    taken = assigned_names(tree)
    eval_ctx = EvalContext(env, name)
    locale = constants.get("locale") if "locale" not in taken else None
    scalars = {k: v for k, v in constants.items() if k not in taken and isinstance(v, _SCALARS)}
    mappings = {k: v for k, v in constants.items() if k not in taken and isinstance(v, Mapping)}

    class Fold(NodeTransformer):
        def visit_Name(self, n: nodes.Name) -> nodes.Node:  # noqa: N802
            if n.ctx == "load" and n.name in scalars:
                return nodes.Const(scalars[n.name], lineno=n.lineno)
            return n

        def visit_Getattr(self, n: nodes.Getattr) -> nodes.Node:  # noqa: N802
            inner = n.node
            if (
                isinstance(inner, nodes.Name)
                and inner.ctx == "load"
                and inner.name in mappings
                and n.ctx == "load"
                and n.attr not in _DICT_ATTRIBUTES
            ):
                value = mappings[inner.name].get(n.attr, _MISSING)
                if value is not _MISSING and isinstance(value, _SCALARS):
                    return nodes.Const(value, lineno=n.lineno)
            result: nodes.Node = self.generic_visit(n)
            return result

        def visit_Filter(self, node: nodes.Filter) -> nodes.Node:  # noqa: N802
            n = self.generic_visit(node)
            if (
                not isinstance(n, nodes.Filter)
                or n.name != "localized"
                or locale is None
                or env.filters.get("localized") is not FILTERS["localized"]
                or n.kwargs
                or n.dyn_args is not None
                or n.dyn_kwargs is not None
            ):
                return n
            if isinstance(n.node, nodes.Const):
                table = n.node.value
            elif isinstance(n.node, nodes.Name) and n.node.ctx == "load" and n.node.name in hidden:
                table = hidden[n.node.name]
            else:
                return n
            try:
                args = [a.as_const(eval_ctx) for a in n.args]
            except (nodes.Impossible, Exception):
                return n
            picked = pick_language(table, locale, *args[:1])
            if isinstance(picked, _SCALARS):
                return nodes.Const(picked, lineno=n.lineno)
            key = f"{prefix}{len(hidden)}"
            hidden[key] = picked
            return nodes.Name(key, "load", lineno=n.lineno)

    folded: nodes.Template = Fold().visit(tree)
    folded.body = _prune(folded.body, eval_ctx)
    return folded


def _prune(stmts: list[Any], eval_ctx: EvalContext) -> list[Any]:
    out: list[Any] = []
    for node in stmts:
        if isinstance(node, nodes.If):
            taken = _branch(node, eval_ctx)
            if taken is not None:
                out.extend(_prune(taken, eval_ctx))
                continue
            node.body = _prune(node.body, eval_ctx)
            for branch in node.elif_:
                branch.body = _prune(branch.body, eval_ctx)
            node.else_ = _prune(node.else_, eval_ctx)
        else:
            for attr in ("body", "else_"):
                inner = getattr(node, attr, None)
                if isinstance(inner, list):
                    setattr(node, attr, _prune(inner, eval_ctx))
        out.append(node)
    return out


def _branch(node: nodes.If, eval_ctx: EvalContext) -> list[Any] | None:
    """The statements an ``{% if %}`` chain runs when its tests are constants, else None."""
    chain: list[tuple[Any, list[Any]]] = [(node.test, node.body)]
    chain += [(b.test, b.body) for b in node.elif_]
    for test, body in chain:
        try:
            value = test.as_const(eval_ctx)
        except (nodes.Impossible, Exception):
            return None
        if value:
            return list(body)
    return list(node.else_)
