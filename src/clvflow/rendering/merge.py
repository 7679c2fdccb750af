"""The HTML and the text part of a linked template as one pass over shared statements.

The text part is derived from the HTML (``textpart``), so once both are linked their
statements — every ``if``, ``for``, ``with`` and ``set`` — are the same, in the same
order; only the output between them differs. ``merge`` pairs them up and keeps each
statement once, with the HTML's output as it is and the text's output marked as such
(written, unescaped, to the text part's buffer: ``codegen``). Then every test, loop and
binding runs once per message instead of twice, and a value printed by both parts at the
same place (``{{ customer.first_name }}``) is computed once (``shared_values``).

Statements must match exactly (the same tree; hidden values — a partial's constants — may
be different objects if they are equal, which for the values a sandboxed template cannot
change means the same); otherwise ``UnmergeableError`` and the parts render one after the
other as before. A ``{% set x %}...{% endset %}`` block or an ``{% autoescape %}`` block is
never merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import nodes

# Jinja allows no node types of one's own: output nodes carry marks instead, which
# ``codegen`` reads. TEXT_PART: the text part's output, unescaped, appended to the text
# buffer. TEXT_START: an empty output node that creates the text buffer.
from clvflow.rendering.codegen import TEXT_PART, TEXT_START

_VALUE = "_clvflow_v"  # prefix of the variables that hold a value both parts print


def TextOutput(children: list[nodes.Expr], lineno: int | None = None) -> nodes.Output:  # noqa: N802
    """An output node of the text part."""
    node = nodes.Output(children, lineno=lineno)
    setattr(node, TEXT_PART, True)
    return node


def is_text(node: nodes.Node) -> bool:
    return bool(getattr(node, TEXT_PART, False))


def TextStart(name: str) -> nodes.Output:  # noqa: N802
    """The statement that creates the text buffer."""
    node = nodes.Output([], lineno=1)
    setattr(node, TEXT_START, name)
    return node


class UnmergeableError(Exception):
    """The two parts' statements differ."""


class _Same:
    def __init__(self, html_hidden: Mapping[str, Any], text_hidden: Mapping[str, Any]) -> None:
        self.hidden = {**html_hidden, **text_hidden}

    def nodes(self, a: Any, b: Any) -> bool:
        if isinstance(a, list) or isinstance(b, list):
            return (
                isinstance(a, list)
                and isinstance(b, list)
                and len(a) == len(b)
                and all(self.nodes(x, y) for x, y in zip(a, b, strict=True))
            )
        if not isinstance(a, nodes.Node) or not isinstance(b, nodes.Node):
            return type(a) is type(b) and bool(a == b)
        if type(a) is not type(b):
            return False
        if (
            isinstance(a, nodes.Name)
            and isinstance(b, nodes.Name)
            and a.name in self.hidden
            and b.name in self.hidden
            and a.ctx == b.ctx
        ):
            x, y = self.hidden[a.name], self.hidden[b.name]
            return x is y or (type(x) is type(y) and _plain(x) and bool(x == y))
        pairs = zip(a.iter_fields(), b.iter_fields(), strict=True)
        return all(self.nodes(x, y) for (_, x), (_, y) in pairs)


def _plain(value: Any) -> bool:
    """Values templates cannot change, for which equal means interchangeable."""
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, str | int | float | bool | type(None))


def _split(stmts: list[Any]) -> tuple[list[list[nodes.Output]], list[nodes.Node]]:
    """The output runs around the statements: runs[i] comes before statements[i]."""
    runs: list[list[nodes.Output]] = [[]]
    statements: list[nodes.Node] = []
    for node in stmts:
        if isinstance(node, nodes.Output):
            runs[-1].append(node)
        else:
            statements.append(node)
            runs.append([])
    return runs, statements


def merge(html: list[Any], text: list[Any], same: _Same) -> list[Any]:
    html_runs, html_statements = _split(html)
    text_runs, text_statements = _split(text)
    if len(html_statements) != len(text_statements):
        raise UnmergeableError("a different number of statements")
    out: list[Any] = []
    pairs = zip([*html_statements, None], [*text_statements, None], strict=True)
    for i, (h, t) in enumerate(pairs):
        out.extend(html_runs[i])
        out.extend(TextOutput(o.nodes, o.lineno) for o in text_runs[i])
        if h is not None:
            out.append(_statement(h, t, same))
    return out


def _statement(h: Any, t: Any, same: _Same) -> nodes.Node:
    if type(h) is not type(t):
        raise UnmergeableError(f"{type(h).__name__} and {type(t).__name__}")
    if isinstance(h, nodes.If):
        if not same.nodes(h.test, t.test) or len(h.elif_) != len(t.elif_):
            raise UnmergeableError("different tests")
        branches = []
        for a, b in zip(h.elif_, t.elif_, strict=True):
            if not same.nodes(a.test, b.test):
                raise UnmergeableError("different tests")
            branches.append(nodes.If(a.test, merge(a.body, b.body, same), [], [], lineno=a.lineno))
        body, other = merge(h.body, t.body, same), merge(h.else_, t.else_, same)
        return nodes.If(h.test, body, branches, other, lineno=h.lineno)
    if isinstance(h, nodes.For):
        parts = ("target", "iter", "test", "recursive")
        if not all(same.nodes(getattr(h, p), getattr(t, p)) for p in parts):
            raise UnmergeableError("different loops")
        body, other = merge(h.body, t.body, same), merge(h.else_, t.else_, same)
        return nodes.For(h.target, h.iter, body, other, h.test, h.recursive, lineno=h.lineno)
    if isinstance(h, nodes.With):
        if not same.nodes(h.targets, t.targets) or not same.nodes(h.values, t.values):
            raise UnmergeableError("different bindings")
        return nodes.With(h.targets, h.values, merge(h.body, t.body, same), lineno=h.lineno)
    if isinstance(h, nodes.Scope):
        return nodes.Scope(merge(h.body, t.body, same), lineno=h.lineno)
    if isinstance(h, nodes.Assign):
        if not same.nodes(h, t):
            raise UnmergeableError("different assignments")
        return h
    raise UnmergeableError(f"{type(h).__name__} is not merged")


def merge_parts(
    html: list[Any],
    text: list[Any],
    html_hidden: Mapping[str, Any],
    text_hidden: Mapping[str, Any],
    buffer: str,
) -> list[Any]:
    """The statements of one template writing the HTML (output) and the text part (the
    list ``context.vars[buffer]``)."""
    same = _Same(html_hidden, text_hidden)
    body = merge(html, text, same)
    return [TextStart(buffer), *shared_values(body, same)]


def _pure(expr: nodes.Node) -> bool:
    """An expression worth computing once and safe to compute earlier: no calls (a
    ``cycler.next()``), no ``random``, not a constant."""
    if isinstance(expr, nodes.Const | nodes.TemplateData):
        return False
    parts = [expr, *expr.find_all(nodes.Node)]
    if any(isinstance(n, nodes.Call) for n in parts):
        return False
    return not any(isinstance(n, nodes.Filter) and n.name == "random" for n in parts)


def shared_values(stmts: list[Any], same: _Same, counter: list[int] | None = None) -> list[Any]:
    """Where the HTML and the text part print the same expression between two statements,
    compute it once into a variable (``{% set %}`` just before) and print that."""
    counter = counter if counter is not None else [0]
    out: list[Any] = []
    run: list[nodes.Output] = []

    def flush() -> None:
        html = [child for o in run if not is_text(o) for child in o.nodes]
        text = [child for o in run if is_text(o) for child in o.nodes]
        names: list[tuple[nodes.Node, str]] = []
        for expr in html:
            if not _pure(expr) or any(same.nodes(expr, e) for e, _ in names):
                continue
            if any(same.nodes(expr, other) for other in text):
                names.append((expr, f"{_VALUE}{counter[0]}"))
                counter[0] += 1
        for value, name in names:
            out.append(nodes.Assign(nodes.Name(name, "store"), value, lineno=value.lineno))
        for output in run:
            output.nodes = [_named(child, names, same) for child in output.nodes]
            out.append(output)
        run.clear()

    for node in stmts:
        if isinstance(node, nodes.Output):
            run.append(node)
            continue
        flush()
        for attr in ("body", "else_"):
            inner = getattr(node, attr, None)
            if isinstance(inner, list):
                setattr(node, attr, shared_values(inner, same, counter))
        if isinstance(node, nodes.If):
            for branch in node.elif_:
                branch.body = shared_values(branch.body, same, counter)
        out.append(node)
    flush()
    return out


def _named(expr: Any, names: list[tuple[nodes.Node, str]], same: _Same) -> Any:
    for known, name in names:
        if same.nodes(expr, known):
            return nodes.Name(name, "load", lineno=expr.lineno)
    return expr
