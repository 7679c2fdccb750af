"""A (template, locale) linked into one template that renders the subject and preheader,
the HTML and the text part.

``linker`` flattens each part (layout, includes, macros), ``fold`` puts the locale and the
shop's values in; here the parts become one template, so a message costs one Jinja render
instead of three. The subject (NUL preheader) is captured first, the HTML is the output, and
the text part follows it in its own scope, unescaped as in its own environment:

    {% set _clvflow_head %}{% autoescape false %}<subject>{% endautoescape %}{% endset %}
    {% set subject, preheader = _clvflow_head | _clvflow_split(<has a preheader>) %}
    {% scope %}<the HTML part>{% endscope %}
    {% set _clvflow_text %}{% autoescape false %}<the text part>{% endautoescape %}{% endset %}

A ``LinkedTemplate`` is used only for contexts with the locale and shop it was made for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.environment import Environment, Template

from clvflow.rendering.blanks import strip_line_end_blanks, trim_empty_lines
from clvflow.rendering.fold import fold
from clvflow.rendering.linker import link
from clvflow.rendering.textpart import header_text
from clvflow.rendering.trees import UnlinkableError, assigned_names

TEXT = "_clvflow_text"  # the variable the text part is captured in
HEAD = "_clvflow_head"  # the variable the subject (NUL preheader) is captured in
SPLIT = "_clvflow_split"  # the filter that makes that the subject and the preheader


def split_head(both: str, has_preheader: bool) -> tuple[str, str | None]:
    """``render._head`` from one rendering: header text of the subject, and of the
    preheader after the one NUL (a NUL inside the values fails: rendered as written)."""
    both = str(both)  # captured as Markup: its methods wrap every piece
    if not has_preheader:
        return header_text(both), None
    subject, nul, preheader = both.partition("\x00")
    if not nul or "\x00" in preheader:
        raise ValueError("a NUL inside the subject or the preheader")
    return header_text(subject), header_text(preheader)


@dataclass(frozen=True)
class LinkedTemplate:
    """One template giving the subject and preheader, the HTML (output) and the text
    part (``TEXT``, if any)."""

    template: Template
    has_text: bool
    locale: str
    shop: Mapping[str, Any]
    reads_items: bool = True  # may read the order's lines (``reads_order_items``)

    def applies(self, context: Mapping[str, Any]) -> bool:
        shop = context.get("shop")
        return context.get("locale") == self.locale and (shop is self.shop or shop == self.shop)

    def render(self, context: Mapping[str, Any]) -> tuple[str, str | None, str, str | None]:
        """(subject, preheader, HTML, text part or None) for a message's context (without
        ``subject`` and ``preheader``: they are rendered here); Jinja's exceptions as they
        are."""
        template = self.template
        ctx = template.new_context(context)  # type: ignore[arg-type]
        html = "".join(template.root_render_func(ctx))
        found = ctx.vars
        text = str(found[TEXT]) if self.has_text else None  # captured as Markup
        return found["subject"], found["preheader"], html, text


def _flat(template: Template, constants: Mapping[str, Any], prefix: str) -> tuple[Any, Any]:
    if template.name is None:
        raise UnlinkableError("a template without a name")
    env = template.environment
    tree, hidden = link(env, template.name, prefix)
    return fold(env, template.name, tree, constants, hidden, prefix), hidden


def reads_order_items(tree: nodes.Template) -> bool:
    """Whether the template may read ``order.items``: it does, or it uses ``order`` other
    than by a field (``order.total``, ``order["order_id"]``) or as a condition (``{% if
    order %}``, ``not order``, ``order is none``). Lets a batch skip fetching the lines."""
    if "order" in assigned_names(tree):
        return True
    safe: set[int] = set()
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Getattr) and node.attr != "items":
            safe.add(id(node.node))
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value != "items":
                safe.add(id(node.node))
        elif isinstance(node, nodes.If | nodes.CondExpr):
            safe.add(id(node.test))
        elif isinstance(node, nodes.Not | nodes.Test):
            safe.add(id(node.node))
    return any(
        n.name == "order" and n.ctx == "load" and id(n) not in safe
        for n in tree.find_all(nodes.Name)
    )


def _unescaped(body: list[nodes.Node]) -> nodes.ScopedEvalContextModifier:
    return nodes.ScopedEvalContextModifier([nodes.Keyword("autoescape", nodes.Const(False))], body)


def _head(
    env: Environment, source: str, constants: Mapping[str, Any], preheader: bool
) -> tuple[list[nodes.Node], dict[str, Any]]:
    """The statements that render the subject (NUL preheader) with ``constants`` folded in
    and set ``subject`` and ``preheader`` as ``render._head`` does."""
    hidden: dict[str, Any] = {}
    tree = fold(env, "<head>", env.parse(source), constants, hidden, "_clvflow_s")
    capture = nodes.AssignBlock(nodes.Name(HEAD, "store"), None, [_unescaped(tree.body)])
    names = nodes.Tuple([nodes.Name("subject", "store"), nodes.Name("preheader", "store")], "store")
    split = nodes.Filter(nodes.Name(HEAD, "load"), SPLIT, [nodes.Const(preheader)], [], None, None)
    return [capture, nodes.Assign(names, split)], hidden


def link_parts(
    html: Template,
    text: Template | None,
    locale: str,
    shop: Mapping[str, Any],
    head: tuple[Environment, str, bool],
) -> LinkedTemplate:
    """The subject, HTML and text templates of a compiled template as one
    (``UnlinkableError`` if a part cannot be linked); ``head``: the environment and source
    of its subject (NUL preheader), and whether there is a preheader."""
    constants = {"locale": locale, "shop": shop}
    html_tree, hidden = _flat(html, constants, "_clvflow_h")
    body: list[nodes.Node] = [nodes.Scope(html_tree.body)]
    if text is not None:
        text_tree, text_hidden = _flat(text, constants, "_clvflow_t")
        strip_line_end_blanks(text_tree.body)
        trim_empty_lines(text_tree.body)
        plain = _unescaped(text_tree.body)
        body.append(nodes.AssignBlock(nodes.Name(TEXT, "store"), None, [plain]))
        hidden = {**hidden, **text_hidden}
    head_statements, head_hidden = _head(*head[:2], constants, head[2])
    body = [*head_statements, *body]
    hidden = {**hidden, **head_hidden}
    env = html.environment
    env.filters.setdefault(SPLIT, split_head)
    name = html.name
    assert name is not None
    tree = nodes.Template(body)
    tree.set_environment(env)
    tree.set_lineno(1)
    loader = env.loader
    assert loader is not None
    code = env.compile(tree, name, loader.get_source(env, name)[1])
    template = env.template_class.from_code(env, code, env.make_globals(hidden))
    items = reads_order_items(tree)
    return LinkedTemplate(template, text is not None, locale, shop, items)
