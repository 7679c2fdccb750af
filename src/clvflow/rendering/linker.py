"""One flat template per (template, locale): layout, partials and macros linked at compile
time, the shop's values and the locale folded in.

A campaign template extends the layout, which includes the footer; the template imports
macros (button, product grid) and calls them. Jinja does that work per message: a context
per include, a module lookup per import, a Python call with argument binding per macro
call. The linker does it once, on the syntax tree:

- ``{% extends %}``: the layout's tree with the template's blocks in place (each in a
  ``Scope``, so a block's ``{% set %}`` stays inside it, as in Jinja);
- ``{% include "x" %}`` (with context, name known): the included tree in a ``Scope``;
- ``{{ m(a, b) }}`` for a macro imported without context: its body in a ``With`` that binds
  the parameters to the arguments (``macros``).

``fold`` then turns ``locale`` and the shop's values into constants, and ``linked`` puts
the subject, the HTML and the text part into one template.

Anything else (``super()``, ``self``, scoped or nested blocks, imports with context, a
macro used other than called, ``caller``, a name a macro body reads from elsewhere,
multi-level layouts, ...) raises ``UnlinkableError``, and the template renders as written.
A message whose linked render fails is rendered again as written, so errors keep their
file and line (``render.render_email``). Tests compare both renderings for every shipped
template, and ``clvflow validate`` compares them for its sample customers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment

from clvflow.rendering.macros import inline
from clvflow.rendering.trees import (
    HIDDEN,
    Imported,
    Linking,
    UnlinkableError,
    assigned_names,
    loads,
    no_self,
    template_name,
)


def link(
    env: Environment, name: str, prefix: str = HIDDEN
) -> tuple[nodes.Template, dict[str, Any]]:
    """The flat tree of template ``name`` and the hidden globals it needs (named
    ``prefix`` and a number)."""
    autoescape = env.autoescape(name) if callable(env.autoescape) else bool(env.autoescape)
    state = Linking(env, autoescape, prefix)
    tree = state.tree(name)
    body = _extend(state, name, tree)
    imports = _imports(state, name, body)
    flat = _expand(state, body, imports)
    taken = assigned_names(nodes.Template(flat))
    if clash := taken & set(imports):
        raise UnlinkableError(f"{', '.join(sorted(clash))}: both a macro and a variable")
    if left := loads(nodes.Template(flat)) & set(imports):
        raise UnlinkableError(f"{', '.join(sorted(left))}: a macro used other than called")
    return nodes.Template(flat, lineno=1), state.hidden


def _extend(state: Linking, name: str, tree: nodes.Template) -> list[nodes.Node]:
    """The template's statements with its layout (if any) linked in."""
    no_self(name, tree)
    body = list(tree.body)
    at = next((i for i, n in enumerate(body) if isinstance(n, nodes.Extends)), None)
    if at is None:
        if any(True for _ in tree.find_all(nodes.Block)):
            raise UnlinkableError(f"{name}: blocks without a layout")
        return body
    if any(not isinstance(n, nodes.Output) for n in body[:at]):
        raise UnlinkableError(f"{name}: statements before extends")
    blocks: dict[str, list[nodes.Node]] = {}
    imports: list[nodes.Node] = []
    for node in body[at + 1 :]:
        if isinstance(node, nodes.Block):
            if node.scoped or node.required or any(True for _ in node.find_all(nodes.Block)):
                raise UnlinkableError(f"{name}: a scoped, required or nested block")
            blocks[node.name] = node.body
        elif isinstance(node, nodes.FromImport):
            imports.append(node)
        elif not isinstance(node, nodes.Output):  # Jinja ignores output after extends
            raise UnlinkableError(f"{name}: {type(node).__name__} beside the blocks")
    extends = body[at]
    assert isinstance(extends, nodes.Extends)
    layout = template_name(name, extends.template)
    state.same_escaping(layout)
    parent = state.tree(layout)
    no_self(layout, parent)
    if any(True for _ in parent.find_all(nodes.Extends)):
        raise UnlinkableError(f"{layout}: a layout that extends another")
    return body[:at] + imports + _fill(layout, parent.body, blocks)


def _fill(layout: str, stmts: list[nodes.Node], blocks: dict[str, list[nodes.Node]]) -> list[Any]:
    out: list[Any] = []
    for node in stmts:
        if isinstance(node, nodes.Block):
            if node.scoped or node.required or any(True for _ in node.find_all(nodes.Block)):
                raise UnlinkableError(f"{layout}: a scoped, required or nested block")
            out.append(nodes.Scope(blocks.get(node.name, node.body), lineno=node.lineno))
        elif isinstance(node, nodes.If):
            node.body = _fill(layout, node.body, blocks)
            for branch in node.elif_:
                branch.body = _fill(layout, branch.body, blocks)
            node.else_ = _fill(layout, node.else_, blocks)
            out.append(node)
        else:
            if any(True for _ in node.find_all(nodes.Block)):
                raise UnlinkableError(f"{layout}: a block inside {type(node).__name__}")
            out.append(node)
    return out


def _imports(state: Linking, name: str, body: list[nodes.Node]) -> dict[str, Imported]:
    """Remove the ``{% from %}`` statements at the top level of ``body``; what they import.
    A name may not be used before it is imported."""
    found: dict[str, Imported] = {}
    kept: list[nodes.Node] = []
    used: set[str] = set()
    for node in body:
        if isinstance(node, nodes.FromImport):
            if node.with_context:
                raise UnlinkableError(f"{name}: an import with context")
            partial = template_name(name, node.template)
            state.same_escaping(partial)
            for item in node.names:
                macro, alias = item if isinstance(item, tuple) else (item, item)
                if alias in used:
                    raise UnlinkableError(f"{name}: {alias} used before it is imported")
                if found.get(alias, Imported(partial, macro)) != Imported(partial, macro):
                    raise UnlinkableError(f"{name}: {alias} imported twice")
                found[alias] = Imported(partial, macro)
        else:
            used |= loads(node)
            kept.append(node)
    body[:] = kept
    return found


def _expand(
    state: Linking, stmts: Iterable[nodes.Node], imports: Mapping[str, Imported]
) -> list[Any]:
    """Includes linked in, imported macros' calls replaced by their bodies."""
    out: list[Any] = []
    for node in stmts:
        if isinstance(node, nodes.Output):
            out.extend(_output(state, node, imports))
        elif isinstance(node, nodes.Include):
            out.append(_include(state, node, imports))
        elif isinstance(node, nodes.If):
            node.body = _expand(state, node.body, imports)
            for branch in node.elif_:
                branch.body = _expand(state, branch.body, imports)
            node.else_ = _expand(state, node.else_, imports)
            out.append(node)
        elif isinstance(node, nodes.For | nodes.With | nodes.Scope):
            node.body = _expand(state, node.body, imports)
            if isinstance(node, nodes.For):
                node.else_ = _expand(state, node.else_, imports)
            out.append(node)
        elif isinstance(node, nodes.Assign | nodes.AssignBlock):
            if isinstance(node, nodes.AssignBlock):
                node.body = _expand(state, node.body, imports)
            out.append(node)
        else:
            raise UnlinkableError(f"{type(node).__name__} is not linked")
    return out


def _include(state: Linking, node: nodes.Include, imports: Mapping[str, Imported]) -> nodes.Scope:
    if node.ignore_missing or not node.with_context:
        raise UnlinkableError("an include without context or ignoring a missing file")
    name = template_name("include", node.template)
    state.same_escaping(name)
    tree = state.tree(name)
    no_self(name, tree)
    if any(True for _ in tree.find_all((nodes.Extends, nodes.Block, nodes.Macro))):
        raise UnlinkableError(f"{name}: an included file with a layout, blocks or macros")
    body = list(tree.body)
    mine = _imports(state, name, body)
    state.depth += 1
    if state.depth > 8:
        raise UnlinkableError(f"{name}: includes nested too deep")
    try:
        inner = _expand(state, body, {**imports, **mine})
    finally:
        state.depth -= 1
    if taken := assigned_names(nodes.Template(inner)) & set(mine):
        raise UnlinkableError(f"{name}: {', '.join(sorted(taken))} both macro and variable")
    if left := loads(nodes.Template(inner)) & set(mine):
        raise UnlinkableError(f"{name}: {', '.join(sorted(left))}: a macro used other than called")
    return nodes.Scope(inner, lineno=node.lineno)


def _output(
    state: Linking, node: nodes.Output, imports: Mapping[str, Imported]
) -> list[nodes.Node]:
    """An output node, split around the macro calls it prints."""
    out: list[nodes.Node] = []
    pending: list[nodes.Expr] = []
    for child in node.nodes:
        call = child
        if (
            isinstance(call, nodes.Call)
            and isinstance(call.node, nodes.Name)
            and call.node.name in imports
        ):
            if pending:
                out.append(nodes.Output(pending, lineno=node.lineno))
                pending = []
            imported = imports[call.node.name]
            out.append(inline(state, imported.template, imported.macro, call, _expand))
        else:
            pending.append(child)
    if pending:
        out.append(nodes.Output(pending, lineno=node.lineno))
    return out
