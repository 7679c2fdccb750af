"""One flat template per (template, locale): layout, partials and macros linked at compile
time, the shop's values and the locale folded in.

A campaign template extends the layout, which includes the footer; the template imports
macros (button, product grid) and calls them. Jinja does that work per message: a context
per include, a module lookup per import, a Python call with argument binding per macro
call (about 40 µs of a message's 100 here). The linker does it once, on the syntax tree:

- ``{% extends %}``: the layout's tree with the template's blocks in place (each in a
  ``Scope``, so a block's ``{% set %}`` stays inside it, as in Jinja);
- ``{% include "x" %}`` (with context, name known): the included tree in a ``Scope``;
- ``{{ m(a, b) }}`` for a macro imported without context: its body in a ``With`` that binds
  the parameters to the arguments, when every name the body reads is a parameter, a loop
  variable or value it sets itself, or a value or macro of its own file (values are
  passed as hidden globals, the same objects Jinja's module holds);

``fold`` then turns ``locale`` and the shop's values into constants, and ``linked`` puts
the HTML and the text part into one template.

Anything else (``super()``, ``self``, scoped or nested blocks, imports with context, a
macro used other than called, ``caller``, a name a macro body reads from elsewhere,
multi-level layouts, ...) raises ``UnlinkableError``, and the template renders as written.
The flat template only speeds up messages that render: a message whose flat render fails
is rendered again as written, so errors keep their file and line
(``render.render_email``). Tests compare both renderings for every shipped template.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment, Template
from jinja2.nodes import EvalContext
from jinja2.runtime import Macro
from jinja2.visitor import NodeTransformer

HIDDEN = "_clvflow_k"  # prefix of the globals that carry a partial's values


class UnlinkableError(Exception):
    """The template uses something the linker does not reproduce exactly."""


@dataclass
class _Linking:
    env: Environment
    autoescape: bool
    prefix: str
    hidden: dict[str, Any] = field(default_factory=dict)
    trees: dict[str, nodes.Template] = field(default_factory=dict)
    depth: int = 0

    def tree(self, name: str) -> nodes.Template:
        found = self.trees.get(name)
        if found is None:
            loader = self.env.loader
            if loader is None:
                raise UnlinkableError("no loader")
            source = loader.get_source(self.env, name)[0]
            found = self.trees[name] = self.env.parse(source, name)
        copied: nodes.Template = _copy(found, self.env)
        return copied

    def same_escaping(self, name: str) -> None:
        autoescape = self.env.autoescape
        mine = autoescape(name) if callable(autoescape) else bool(autoescape)
        if mine != self.autoescape:
            raise UnlinkableError(f"{name} is escaped differently")

    def hide(self, value: Any) -> nodes.Name:
        for key, known in self.hidden.items():
            if known is value:
                return nodes.Name(key, "load")
        key = f"{self.prefix}{len(self.hidden)}"
        self.hidden[key] = value
        return nodes.Name(key, "load")


def _copy(node: Any, env: Environment) -> Any:
    return copy.deepcopy(node, {id(env): env})


def _const(name: str, node: Any) -> str:
    if not isinstance(node, nodes.Const) or not isinstance(node.value, str):
        raise UnlinkableError(f"{name}: a template name chosen at run time")
    return node.value


def _names(node: nodes.Node) -> list[nodes.Name]:
    """The names in ``node``, itself included (``find_all`` only searches below)."""
    found = list(node.find_all(nodes.Name))
    return [node, *found] if isinstance(node, nodes.Name) else found


def _loads(node: nodes.Node) -> set[str]:
    return {n.name for n in _names(node) if n.ctx == "load"}


def assigned_names(node: nodes.Node) -> set[str]:
    return {n.name for n in _names(node) if n.ctx in ("store", "param")}


def link(
    env: Environment, name: str, prefix: str = HIDDEN
) -> tuple[nodes.Template, dict[str, Any]]:
    """The flat tree of template ``name`` and the hidden globals it needs (named
    ``prefix`` and a number)."""
    autoescape = env.autoescape(name) if callable(env.autoescape) else bool(env.autoescape)
    state = _Linking(env, autoescape, prefix)
    tree = state.tree(name)
    body = _extend(state, name, tree)
    imports = _imports(state, name, body)
    flat = _expand(state, body, imports)
    taken = assigned_names(nodes.Template(flat))
    if clash := taken & set(imports):
        raise UnlinkableError(f"{', '.join(sorted(clash))}: both a macro and a variable")
    if left := _loads(nodes.Template(flat)) & set(imports):
        raise UnlinkableError(f"{', '.join(sorted(left))}: a macro used other than called")
    return nodes.Template(flat, lineno=1), state.hidden


def _no_self(name: str, tree: nodes.Node) -> None:
    if {"self", "super"} & _loads(tree):
        raise UnlinkableError(f"{name}: self or super()")


def _extend(state: _Linking, name: str, tree: nodes.Template) -> list[nodes.Node]:
    """The template's statements with its layout (if any) linked in."""
    _no_self(name, tree)
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
    layout = _const(name, extends.template)
    state.same_escaping(layout)
    parent = state.tree(layout)
    _no_self(layout, parent)
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


@dataclass(frozen=True)
class _Imported:
    template: str
    macro: str


def _imports(state: _Linking, name: str, body: list[nodes.Node]) -> dict[str, _Imported]:
    """Remove the ``{% from %}`` statements at the top level of ``body``; what they import.
    A name may not be used before it is imported."""
    found: dict[str, _Imported] = {}
    kept: list[nodes.Node] = []
    used: set[str] = set()
    for node in body:
        if isinstance(node, nodes.FromImport):
            if node.with_context:
                raise UnlinkableError(f"{name}: an import with context")
            partial = _const(name, node.template)
            state.same_escaping(partial)
            for item in node.names:
                macro, alias = item if isinstance(item, tuple) else (item, item)
                if alias in used:
                    raise UnlinkableError(f"{name}: {alias} used before it is imported")
                if found.get(alias, _Imported(partial, macro)) != _Imported(partial, macro):
                    raise UnlinkableError(f"{name}: {alias} imported twice")
                found[alias] = _Imported(partial, macro)
        else:
            used |= _loads(node)
            kept.append(node)
    body[:] = kept
    return found


def _expand(
    state: _Linking, stmts: Iterable[nodes.Node], imports: Mapping[str, _Imported]
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


def _include(state: _Linking, node: nodes.Include, imports: Mapping[str, _Imported]) -> nodes.Scope:
    if node.ignore_missing or not node.with_context:
        raise UnlinkableError("an include without context or ignoring a missing file")
    name = _const("include", node.template)
    state.same_escaping(name)
    tree = state.tree(name)
    _no_self(name, tree)
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
    if left := _loads(nodes.Template(inner)) & set(mine):
        raise UnlinkableError(f"{name}: {', '.join(sorted(left))}: a macro used other than called")
    return nodes.Scope(inner, lineno=node.lineno)


def _output(
    state: _Linking, node: nodes.Output, imports: Mapping[str, _Imported]
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
            out.append(_inline(state, imported.template, imported.macro, call))
        else:
            pending.append(child)
    if pending:
        out.append(nodes.Output(pending, lineno=node.lineno))
    return out


def _module_values(state: _Linking, partial: str) -> tuple[dict[str, nodes.Macro], dict[str, Any]]:
    """A partial's macros (trees) and its other top-level values (from Jinja's module)."""
    tree = state.tree(partial)
    macros: dict[str, nodes.Macro] = {}
    for node in tree.body:
        if isinstance(node, nodes.Macro):
            macros[node.name] = node
        elif isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            continue
        elif not isinstance(node, nodes.Output):
            raise UnlinkableError(f"{partial}: {type(node).__name__} at the top of a partial")
    template: Template = state.env.get_template(partial)
    values = {
        k: v for k, v in vars(template.module).items() if not k.startswith("_") and k not in macros
    }
    if any(isinstance(v, Macro) for v in values.values()):
        raise UnlinkableError(f"{partial}: a macro under another name")
    return macros, values


def _inline(state: _Linking, partial: str, name: str, call: nodes.Call) -> nodes.With:
    """``{{ macro(args) }}`` → ``{% with params = args %}body{% endwith %}``."""
    macros, values = _module_values(state, partial)
    macro = macros.get(name)
    if macro is None:
        raise UnlinkableError(f"{partial}: no macro {name}")
    if call.dyn_args is not None or call.dyn_kwargs is not None:
        raise UnlinkableError(f"{partial}: {name} called with *args or **kwargs")
    params = [a.name for a in macro.args]
    if set(params) & set(values):
        raise UnlinkableError(f"{partial}: a parameter of {name} hides a value of its file")
    if len(call.args) > len(params):
        raise UnlinkableError(f"{partial}: {name} called with too many arguments")
    given: dict[str, nodes.Expr] = dict(zip(params, call.args, strict=False))
    for keyword in call.kwargs:
        if keyword.key not in params or keyword.key in given:
            raise UnlinkableError(f"{partial}: {name} called with {keyword.key}=")
        given[keyword.key] = keyword.value
    defaults = dict(zip(params[len(params) - len(macro.defaults) :], macro.defaults, strict=True))
    targets, bound = [], []
    for param in params:
        value = given.get(param, defaults.get(param))
        if value is None:
            raise UnlinkableError(f"{partial}: {name} called without {param}")
        if param not in given:
            try:
                value.as_const(EvalContext(state.env, partial))
            except nodes.Impossible:
                raise UnlinkableError(
                    f"{partial}: {name}: a default that is not constant"
                ) from None
        targets.append(nodes.Name(param, "store"))
        bound.append(value)
    state.depth += 1
    if state.depth > 8:
        raise UnlinkableError(f"{partial}: macros nested too deep")
    try:
        local = {m: _Imported(partial, m) for m in macros}
        body = _expand(state, macro.body, local)
    finally:
        state.depth -= 1
    if assigned_names(nodes.Template(body)) & (set(values) | set(local)):
        raise UnlinkableError(f"{partial}: {name} assigns a name of its file")
    body = [_hide_values(state, n, values) for n in body]
    _closed(partial, name, body, set(params) | set(state.hidden))
    return nodes.With(targets, bound, body, lineno=call.lineno)


def _hide_values(state: _Linking, node: nodes.Node, values: dict[str, Any]) -> nodes.Node:
    """A partial's top-level values, read by its macros, as hidden globals."""

    class Hide(NodeTransformer):
        def visit_Name(self, n: nodes.Name) -> nodes.Node:  # noqa: N802
            if n.ctx == "load" and n.name in values:
                return state.hide(values[n.name])
            return n

    result: nodes.Node = Hide().visit(node)
    return result


def _closed(partial: str, macro: str, stmts: list[Any], bound: set[str]) -> None:
    """Every name the macro body reads is bound inside it (no caller, varargs, loop from
    outside, nor anything of the message's context, which a macro imported without
    context cannot see)."""

    def expr(node: nodes.Node, names: set[str]) -> None:
        if free := _loads(node) - names:
            raise UnlinkableError(f"{partial}: {macro} reads {', '.join(sorted(free))}")

    def block(items: list[Any], names: set[str]) -> None:
        names = set(names)
        for node in items:
            if isinstance(node, nodes.Output):
                expr(node, names)
            elif isinstance(node, nodes.If):
                expr(node.test, names)
                block(node.body, names)
                for branch in node.elif_:
                    expr(branch.test, names)
                    block(branch.body, names)
                block(node.else_, names)
            elif isinstance(node, nodes.For):
                expr(node.iter, names)
                inner = names | assigned_names(node.target) | {"loop"}
                if node.test is not None:
                    expr(node.test, inner)
                block(node.body, inner)
                block(node.else_, names)
            elif isinstance(node, nodes.With):
                for value in node.values:
                    expr(value, names)
                block(node.body, names | assigned_names(nodes.Template(node.targets)))
            elif isinstance(node, nodes.Scope):
                block(node.body, names)
            elif isinstance(node, nodes.Assign):
                expr(node.node, names)
                refs = [node.target, *node.target.find_all(nodes.NSRef)]
                for ref in refs:  # {% set ns.x = ... %}: ns must be the body's own
                    if isinstance(ref, nodes.NSRef) and ref.name not in names:
                        raise UnlinkableError(f"{partial}: {macro} changes {ref.name}")
                names |= assigned_names(node.target)
            else:
                raise UnlinkableError(f"{partial}: {macro}: {type(node).__name__}")

    block(stmts, bound)
