"""Blanks that end a line of a linked text part, removed from the template once.

``tidy_text`` drops the blanks at the end of every line of every message. In a text part
derived from HTML most of them come from the template itself: the spaces html2text leaves
between Jinja tags (``{% endif %} {% if recommendations %}``), which end up right before
a newline. Where every path through the template puts a newline (or the end of the text)
right after such blanks, they are removed here; ``tidy_text`` then finds nothing to do for
most messages and takes its fast path (``textpart.tidy_text``). The output after tidying
is the same: only blanks ``tidy_text`` would have removed are removed.

What may follow a node is worked out over the linked tree: the first character of each
output node (``None``: unknown, e.g. a value), through ``if`` branches, ``for`` loops (which
may run again or not at all), scopes and ``with`` blocks; any other statement is unknown.
A pass removes blanks only where the continuation is surely a newline; passes repeat
until nothing changes (a removal can only turn an unknown or blank continuation into a
newline).
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes

BLANKS = " \t\xa0"
_INNER = re.compile("[ \t\xa0]+\n")
_NEWLINE = frozenset("\n")
Heads = frozenset[str] | None  # the characters output may start with; None: anything


def _union(*sets: Heads) -> Heads:
    if any(s is None for s in sets):
        return None
    out: frozenset[str] = frozenset()
    for s in sets:
        assert s is not None
        out |= s
    return out


def _text(child: nodes.Node) -> str | None:
    if isinstance(child, nodes.TemplateData):
        return str(child.data)
    if isinstance(child, nodes.Const):
        return str(child.value)
    return None


def _output_heads(node: nodes.Output, after: Heads) -> Heads:
    for child in node.nodes:
        text = _text(child)
        if text is None:
            return None
        if text:
            return frozenset(text[0])
    return after


def _loop(node: nodes.For, after: Heads) -> Heads:
    """What one iteration of ``node``'s body may start with."""
    if node.recursive:
        return None
    first: Heads = frozenset()
    for _ in range(16):
        assert first is not None
        nxt = heads(node.body, _union(first, after))
        if nxt is None or nxt == first:
            return nxt
        first = nxt
    return None


def _node_heads(node: nodes.Node, after: Heads) -> Heads:
    if isinstance(node, nodes.Output):
        return _output_heads(node, after)
    if isinstance(node, nodes.If):
        branches = [heads(node.body, after)]
        branches += [heads(b.body, after) for b in node.elif_]
        branches.append(heads(node.else_, after) if node.else_ else after)
        return _union(*branches)
    if isinstance(node, nodes.For):
        return _union(_loop(node, after), heads(node.else_, after) if node.else_ else after)
    if isinstance(node, nodes.With | nodes.Scope | nodes.ScopedEvalContextModifier):
        return heads(node.body, after)
    if isinstance(node, nodes.Assign | nodes.AssignBlock):
        return after
    return None


def heads(stmts: list[Any], after: Heads) -> Heads:
    """What running ``stmts`` and then whatever starts with ``after`` may output first."""
    cont = after
    for node in reversed(stmts):
        cont = _node_heads(node, cont)
    return cont


def _strip(stmts: list[Any], after: Heads) -> bool:
    changed = False
    cont = after
    for node in reversed(stmts):
        if isinstance(node, nodes.Output):
            for child in node.nodes:  # blanks right before a newline of the text itself
                if isinstance(child, nodes.TemplateData) and _INNER.search(child.data):
                    child.data = _INNER.sub("\n", child.data)
                    changed = True
            last = node.nodes[-1] if node.nodes else None
            if (
                isinstance(last, nodes.TemplateData)
                and cont is not None
                and cont <= _NEWLINE
                and last.data[-1:] in tuple(BLANKS)
            ):
                last.data = last.data.rstrip(BLANKS)
                changed = True
        elif isinstance(node, nodes.If):
            for body in [node.body, *[b.body for b in node.elif_], node.else_]:
                changed |= _strip(body, cont)
        elif isinstance(node, nodes.For):
            changed |= _strip(node.body, _union(_loop(node, cont), cont))
            changed |= _strip(node.else_, cont)
        elif isinstance(node, nodes.With | nodes.Scope | nodes.ScopedEvalContextModifier):
            changed |= _strip(node.body, cont)
        cont = _node_heads(node, cont)
    return changed


def strip_line_end_blanks(stmts: list[Any]) -> None:
    """Remove the blanks that always end a line (or the text) from a text part's tree."""
    for _ in range(8):
        if not _strip(stmts, _NEWLINE):
            return
