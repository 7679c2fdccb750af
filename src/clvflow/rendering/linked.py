"""A (template, locale) linked into one template that renders the HTML and the text part.

``linker`` flattens each part (layout, includes, macros), ``fold`` puts the locale and the
shop's values in; here both parts become one template, so a message costs one Jinja render
instead of two. Mostly the parts' statements are the same and ``merge`` shares them (each
test, loop and shared value runs once, the text goes to its own list); otherwise the text
part follows the HTML in its own scope, unescaped as in its own environment:

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
from clvflow.rendering.linker import UnlinkableError, link
from clvflow.rendering.merge import UnmergeableError, merge_parts

TEXT = "_clvflow_text"  # the variable the text part is captured in


@dataclass(frozen=True)
class LinkedTemplate:
    """One template giving the HTML (output) and the text part (``TEXT``, if any)."""

    template: Template
    has_text: bool
    locale: str
    shop: Mapping[str, Any]
    head: Template | None = None  # subject (NUL preheader), the locale and shop folded in
    merged: bool = False  # HTML and text share their statements (``merge``)

    def applies(self, context: Mapping[str, Any]) -> bool:
        shop = context.get("shop")
        return context.get("locale") == self.locale and (shop is self.shop or shop == self.shop)

    def render_head(self, context: Mapping[str, Any]) -> str:
        """The subject (and NUL and the preheader) unfolded; Jinja's exceptions as they are."""
        head = self.head
        assert head is not None
        return "".join(head.root_render_func(head.new_context(context)))  # type: ignore[arg-type]

    def render(self, context: dict[str, Any]) -> tuple[str, str | None]:
        """(HTML, text part or None); Jinja's exceptions as they are."""
        template = self.template
        ctx = template.new_context(context)
        html = "".join(template.root_render_func(ctx))
        if not self.has_text:
            return html, None
        text = ctx.vars[TEXT]  # the merged parts' list, or the text captured after the HTML
        return html, "".join(text if type(text) is list else (text,))


def _flat(template: Template, constants: Mapping[str, Any], prefix: str) -> tuple[Any, Any]:
    if template.name is None:
        raise UnlinkableError("a template without a name")
    env = template.environment
    tree, hidden = link(env, template.name, prefix)
    return fold(env, template.name, tree, constants, hidden, prefix), hidden


def folded_string(env: Environment, source: str, constants: Mapping[str, Any]) -> Template:
    """A template from a string (a subject) with ``constants`` folded in."""
    hidden: dict[str, Any] = {}
    tree = fold(env, "<head>", env.parse(source), constants, hidden, "_clvflow_s")
    tree.set_environment(env)
    return env.template_class.from_code(env, env.compile(tree), env.make_globals(hidden))


def link_parts(
    html: Template,
    text: Template | None,
    locale: str,
    shop: Mapping[str, Any],
    head: tuple[Environment, str] | None = None,
) -> LinkedTemplate:
    """The HTML and text templates of a compiled template as one (``UnlinkableError`` if
    either part cannot be linked); ``head``: the environment and source of its subject
    (and NUL and preheader), folded too."""
    constants = {"locale": locale, "shop": shop}
    merged = False
    html_tree, hidden = _flat(html, constants, "_clvflow_h")
    body: list[nodes.Node] = [nodes.Scope(html_tree.body)]
    if text is not None:
        text_tree, text_hidden = _flat(text, constants, "_clvflow_t")
        strip_line_end_blanks(text_tree.body)
        trim_empty_lines(text_tree.body)
        try:
            body = merge_parts(html_tree.body, text_tree.body, hidden, text_hidden, TEXT)
            merged = True
        except UnmergeableError:  # one after the other
            plain = nodes.ScopedEvalContextModifier(
                [nodes.Keyword("autoescape", nodes.Const(False))], text_tree.body
            )
            body.append(nodes.AssignBlock(nodes.Name(TEXT, "store"), None, [plain]))
        hidden = {**hidden, **text_hidden}
    env = html.environment
    name = html.name
    assert name is not None
    tree = nodes.Template(body)
    tree.set_environment(env)
    tree.set_lineno(1)
    loader = env.loader
    assert loader is not None
    code = env.compile(tree, name, loader.get_source(env, name)[1])
    template = env.template_class.from_code(env, code, env.make_globals(hidden))
    folded_head = folded_string(*head, constants) if head is not None else None
    return LinkedTemplate(template, text is not None, locale, shop, folded_head, merged)
