"""A call of a macro imported without context, linked in: ``{{ m(a, b) }}`` becomes the
macro's body in a ``With`` that binds its parameters to the arguments, when every name the
body reads is a parameter, a loop variable or value it sets itself, or a value or macro of
its own file (values are passed as hidden globals, the same objects Jinja's module holds).
Anything else raises ``UnlinkableError``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.environment import Template
from jinja2.nodes import EvalContext
from jinja2.runtime import Macro
from jinja2.visitor import NodeTransformer

from clvflow.rendering.trees import (
    Imported,
    Linking,
    UnlinkableError,
    assigned_names,
    copy_tree,
    loads,
)

# Links a list of statements (``linker``): the macro body's own includes and macro calls.
Expand = Callable[[Linking, Iterable[nodes.Node], Mapping[str, Imported]], list[Any]]


def _module_values(state: Linking, partial: str) -> tuple[dict[str, nodes.Macro], dict[str, Any]]:
    """A partial's macros (trees, to read only) and its other top-level values (from
    Jinja's module)."""
    tree = state.parsed(partial)
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


def inline(state: Linking, partial: str, name: str, call: nodes.Call, expand: Expand) -> nodes.With:
    """``{{ macro(args) }}`` → ``{% with params = args %}body{% endwith %}``; ``expand``
    links the body's own calls."""
    macros, values = _module_values(state, partial)
    if name not in macros:
        raise UnlinkableError(f"{partial}: no macro {name}")
    macro: nodes.Macro = copy_tree(macros[name], state.env)  # its body is linked in place
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
        local = {m: Imported(partial, m) for m in macros}
        body = expand(state, macro.body, local)
    finally:
        state.depth -= 1
    if assigned_names(nodes.Template(body)) & (set(values) | set(local)):
        raise UnlinkableError(f"{partial}: {name} assigns a name of its file")
    body = [_hide_values(state, n, values) for n in body]
    _closed(partial, name, body, set(params) | set(state.hidden))
    return nodes.With(targets, bound, body, lineno=call.lineno)


def _hide_values(state: Linking, node: nodes.Node, values: dict[str, Any]) -> nodes.Node:
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
        if free := loads(node) - names:
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
