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
newline). Inside a text node, three or more newlines become two: ``tidy_text`` makes any
longer run of newlines two, so with or without the extra ones the run ends up the same.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes

BLANKS = " \t\xa0"
_BLANK_END = re.compile("[ \t\xa0]+\n")
_RUNS = re.compile("\n\n\n+")
_INNER = re.compile("[ \t\xa0]+\n|\n\n\n")
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
            for child in node.nodes:  # blanks before a newline, empty lines in a row
                if isinstance(child, nodes.TemplateData) and _INNER.search(child.data):
                    child.data = _RUNS.sub("\n\n", _BLANK_END.sub("\n", child.data))
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


# How many newlines (0, 1, or 2 for two or more) end what was output so far; None: unknown.
Tails = frozenset[int] | None


def _text_tail(text: str, before: Tails) -> Tails:
    if not text:
        return before
    stripped = text.rstrip("\n")
    if stripped:
        if stripped[-1] in BLANKS:
            return None  # blanks after the last newline: what they become depends on more
        return frozenset({min(len(text) - len(stripped), 2)})
    if len(text) >= 2:  # two newlines end it, whatever came before
        return frozenset({2})
    if before is None:
        return None
    return frozenset(min(b + len(text), 2) for b in before)


def _output_tails(node: nodes.Output, before: Tails) -> Tails:
    for child in node.nodes:
        text = _text(child)
        before = None if text is None else _text_tail(text, before)
    return before


def _join(*sets: Tails) -> Tails:
    if any(s is None for s in sets):
        return None
    out: frozenset[int] = frozenset()
    for s in sets:
        assert s is not None
        out |= s
    return out


def _loop_start(node: nodes.For, before: Tails) -> Tails:
    """What may come before one iteration of ``node``'s body: before the loop, or the end
    of the previous iteration."""
    if node.recursive:
        return None
    start = before
    for _ in range(16):
        end = tails(node.body, start)
        nxt = _join(before, end)
        if nxt is None or nxt == start:
            return nxt
        start = nxt
    return None


def _node_tails(node: nodes.Node, before: Tails) -> Tails:
    if isinstance(node, nodes.Output):
        return _output_tails(node, before)
    if isinstance(node, nodes.If):
        ends = [tails(node.body, before)] + [tails(b.body, before) for b in node.elif_]
        ends.append(tails(node.else_, before) if node.else_ else before)
        return _join(*ends)
    if isinstance(node, nodes.For):
        start = _loop_start(node, before)
        looped = tails(node.body, start)
        return _join(looped, tails(node.else_, before) if node.else_ else before)
    if isinstance(node, nodes.With | nodes.Scope | nodes.ScopedEvalContextModifier):
        return tails(node.body, before)
    if isinstance(node, nodes.Assign | nodes.AssignBlock):
        return before
    return None


def tails(stmts: list[Any], before: Tails) -> Tails:
    """How many newlines may end the output after ``before`` and then ``stmts``."""
    for node in stmts:
        before = _node_tails(node, before)
    return before


def _keep(before: Tails, leading: int) -> int:
    """How many of an output's ``leading`` newlines change the tidied text, after output
    that ends with ``before`` newlines: runs of three or more become two."""
    if before is None or len(before) != 1:
        return leading
    (ending,) = before
    return min(leading, 2 - ending)


def _trim(stmts: list[Any], before: Tails) -> bool:
    changed = False
    for node in stmts:
        if isinstance(node, nodes.Output) and node.nodes:
            first = node.nodes[0]
            if isinstance(first, nodes.TemplateData) and first.data.startswith("\n"):
                leading = len(first.data) - len(first.data.lstrip("\n"))
                keep = _keep(before, leading)
                if keep < leading:
                    first.data = first.data[leading - keep :]
                    changed = True
        elif isinstance(node, nodes.If):
            for body in [node.body, *[b.body for b in node.elif_], node.else_]:
                changed |= _trim(body, before)
        elif isinstance(node, nodes.For):
            changed |= _trim(node.body, _loop_start(node, before))
            changed |= _trim(node.else_, before)
        elif isinstance(node, nodes.With | nodes.Scope | nodes.ScopedEvalContextModifier):
            changed |= _trim(node.body, before)
        before = _node_tails(node, before)
    return changed


def trim_empty_lines(stmts: list[Any]) -> None:
    """Drop the newlines that only lengthen a run of empty lines ``tidy_text`` shortens to
    one, where what comes before is known (the text's start counts as two newlines: the
    leading ones are stripped)."""
    for _ in range(8):
        if not _trim(stmts, frozenset({2})):
            return
