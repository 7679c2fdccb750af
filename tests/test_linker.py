"""A template linked into one (layout, partials and macros inlined, locale and shop folded)
renders exactly what the template as written renders, or is refused; a linked message that
fails is rendered as written, so its error names the right file and line."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clvflow.errors import TemplateError
from clvflow.rendering.filters import formatting
from clvflow.rendering.linked import LinkedTemplate, link_parts
from clvflow.rendering.render import render_email
from clvflow.rendering.templates import CompiledTemplate, TemplateLibrary
from clvflow.rendering.textpart import tidy_text
from clvflow.rendering.trees import UnlinkableError
from tests.conftest import ROOT
from tests.test_rendering_safety import SSTI_PAYLOADS, _context
from tests.test_shipped_templates_content import LOCALES, NAMES, make_context

SHIPPED = TemplateLibrary(ROOT / "templates", "en")


def _linked(template: CompiledTemplate, context: dict[str, Any]) -> LinkedTemplate:
    return link_parts(
        template.html,
        template.text,
        context["locale"],
        context["shop"],
        (template.subject.environment, template.head_source, template.preheader is not None),
    )


def _variants(locale: str) -> list[dict[str, Any]]:
    """The shipped test customer, and the same with the optional data missing or odd."""
    full = make_context(locale)
    bare = make_context(locale, first_name=None, wedding_date=None, loyalty_points=0)
    bare.update(order=None, promo=None, recommendations=[])
    html = make_context(locale, first_name="<b>Ann</b> & \"Co\" 'x'", role="bridesmaid")
    html["recommendations"] = [
        {**p, "category": "None", "name": "<i>x</i> 50%"} for p in html["recommendations"]
    ]
    one = make_context(locale, orders_count=1, loyalty_points=1)
    one["promo"] = {**one["promo"], "min_order": 0}
    return [full, bare, html, one]


@pytest.mark.slow
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_template_links_and_renders_the_same(name: str, locale: str) -> None:
    template = SHIPPED.get(name, locale)
    for context in _variants(locale):
        linked = _linked(template, context)
        assert linked.applies(context)
        assert render_email(template, context, linked) == render_email(template, context)
        # the linked template itself renders (not the fallback to the template as written)
        subject, _, html, text = linked.render(context)
        assert subject and html.count("<html") == 1 and text


def _library(tmp_path: Path, files: dict[str, str]) -> TemplateLibrary:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return TemplateLibrary(tmp_path, "en")


LAYOUT = (
    '<html lang="{{ locale }}"><body>{% set mark = "L" %}'
    "<h1>{{ shop.name }}</h1>{% block content %}default{% endblock %}"
    '[{{ inner | default("none") }}]{% include "partials/foot.html.j2" %}</body></html>\n'
)
FOOT = (
    '{% set inner = "foot" %}<p>{% if locale[:2] == "hu" %}Leiratkozás{% else %}Unsubscribe'
    '{% endif %}: <a href="{{ unsubscribe_url }}">x</a> {{ shop.postal_address }} {{ mark }}</p>'
)
MACROS = (
    '{% set labels = {"en": {"a": "Apples"}, "hu": {"a": "Alma"}} %}'
    "{% macro card(p, note=none) %}{% set shown = labels | localized({}) %}"
    "<li>{{ shown[p.kind] if p.kind in shown else p.kind }} {{ p.price | money }}"
    "{% if note %} ({{ note }}){% endif %}</li>{% endmacro %}"
    "{% macro grid(items, title) %}<h2>{{ title }}</h2><ul>{% for p in items %}"
    "{{ card(p) }}{% endfor %}</ul>{% endmacro %}"
)


def _compose(
    tmp_path: Path, body: str, extra: dict[str, str] | None = None, imports: str = ""
) -> CompiledTemplate:
    files = {
        "layouts/base.html.j2": LAYOUT,
        "partials/foot.html.j2": FOOT,
        "partials/macros.html.j2": MACROS,
        "t.html.j2": '---\nsubject: "Hi {{ customer.first_name }}"\n---\n'
        '{% extends "layouts/base.html.j2" %}\n'
        '{% from "partials/macros.html.j2" import card, grid %}\n'
        + imports
        + "{% block content %}"
        + body
        + "{% endblock %}\n",
        **(extra or {}),
    }
    return _library(tmp_path, files).get("t", "en")


def _same(template: CompiledTemplate, context: dict[str, Any]) -> str:
    """Linked and as written give the same email, and the linked template itself renders
    it (no fallback to the template as written)."""
    linked = _linked(template, context)
    fast = render_email(template, context, linked)
    written = render_email(template, context)
    assert fast == written
    with formatting(context["locale"], context["currency"]):
        subject, preheader, html, text = linked.render(context)
    assert (subject, preheader) == (written.subject, written.preheader)
    assert text is not None and tidy_text(text) == written.text
    assert html == written.html or not template.css_inlined  # else inlined per message
    return fast.html


ITEMS = [{"kind": "a", "price": 2.5}, {"kind": "b", "price": 1}]


@pytest.mark.parametrize("locale", ["en", "hu"])
def test_blocks_includes_and_macros_keep_their_scopes(tmp_path: Path, locale: str) -> None:
    body = (
        '{% set inner = "block" %}{{ mark }} {{ card(items[0], note="n") }}'
        '{{ grid(items, "T") }}{{ card(items[1]) }}'
    )
    template = _compose(tmp_path, body)
    html = _same(template, {**_context(), "locale": locale, "items": ITEMS})
    # the block's and the include's {% set %} stay inside them; the layout's set is seen
    assert "[none]" in html and "L" in html
    assert ("Alma" if locale == "hu" else "Apples") in html and "(n)" in html


def test_a_failing_linked_message_reports_the_file_and_line_as_written(tmp_path: Path) -> None:
    template = _compose(tmp_path, "{{ card(items[0]) }}\n{{ customer.favourite_colour }}")
    context = {**_context(), "items": ITEMS}
    linked = _linked(template, context)
    with pytest.raises(Exception):  # noqa: B017 (Jinja's own error, whatever its type)
        linked.render(context)
    with pytest.raises(TemplateError) as info:
        render_email(template, context, linked)
    assert info.value.path is not None and info.value.path.name == "t.html.j2"
    assert info.value.line == 7 and "favourite_colour" in info.value.render()


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_fail_inside_the_linked_template(tmp_path: Path, payload: str) -> None:
    template = _compose(tmp_path, f"<p>{payload}</p>")
    context = {**_context(), "items": ITEMS}
    try:
        linked: LinkedTemplate | None = _linked(template, context)
    except UnlinkableError:  # self.…: never linked, rendered as written
        linked = None
    if linked is not None:
        with pytest.raises(Exception):  # noqa: B017 (blocked inside the linked template itself)
            linked.render(context)
    with pytest.raises(TemplateError):
        render_email(template, context, linked)


def test_another_shop_or_locale_renders_as_written(tmp_path: Path) -> None:
    template = _compose(tmp_path, "{{ grid(items, 'T') }}")
    context = {**_context(), "items": ITEMS}
    linked = _linked(template, context)
    other = {**context, "shop": {**context["shop"], "name": "Other"}}
    assert not linked.applies(other) and not linked.applies({**context, "locale": "hu"})
    assert "Other" in render_email(template, other, linked).html


def test_names_a_template_assigns_are_not_folded(tmp_path: Path) -> None:
    body = '{% set locale = "hu" %}{{ locale }}{% for shop in [{"name": "Loop"}] %}'
    body += "{{ shop.name }}{% endfor %}"
    template = _compose(tmp_path, body)
    html = _same(template, {**_context(), "items": ITEMS})
    assert "hu" in html and "Loop" in html


UNLINKABLE = {
    "super": ("{{ super() }}", {}),
    "self": ("{{ self.content() }}", {}),
    "import with context": (
        '{% from "partials/ctx.html.j2" import m with context %}{{ m() }}',
        {"partials/ctx.html.j2": "{% macro m() %}{{ customer.first_name }}{% endmacro %}"},
    ),
    "macro reads the message": (
        '{% from "partials/ctx.html.j2" import m %}{{ m() }}',
        {"partials/ctx.html.j2": "{% macro m() %}{{ customer.first_name }}{% endmacro %}"},
    ),
    "caller": (
        '{% from "partials/ctx.html.j2" import m %}{% call m() %}x{% endcall %}',
        {"partials/ctx.html.j2": "{% macro m() %}{{ caller() }}{% endmacro %}"},
    ),
    "macro as a value": ("{% set c = card %}{{ c(items[0]) }}", {}),
    "include ignore missing": (
        '{% include "partials/x.html.j2" ignore missing %}',
        {"partials/x.html.j2": "x"},
    ),
    "include chosen at run time": ("{% include customer.first_name ~ '.html.j2' %}", {}),
    "local macro": ("{% macro m() %}x{% endmacro %}{{ m() }}", {}),
}


@pytest.mark.parametrize("case", sorted(UNLINKABLE))
def test_what_the_linker_cannot_reproduce_is_refused(tmp_path: Path, case: str) -> None:
    body, extra = UNLINKABLE[case]
    template = _compose(tmp_path, body, extra)
    context = {**_context(), "items": ITEMS}
    with pytest.raises(UnlinkableError):
        _linked(template, context)


def test_a_layout_that_extends_another_is_refused(tmp_path: Path) -> None:
    files = {
        "layouts/outer.html.j2": "<html>{% block content %}{% endblock %}</html>",
        "layouts/base.html.j2": '{% extends "layouts/outer.html.j2" %}',
        "t.html.j2": '---\nsubject: x\n---\n{% extends "layouts/base.html.j2" %}'
        "{% block content %}x{% endblock %}",
    }
    template = _library(tmp_path, files).get("t", "en")
    with pytest.raises(UnlinkableError, match="extends another"):
        _linked(template, _context())


def test_macro_defaults_and_keywords_bind_as_in_jinja(tmp_path: Path) -> None:
    body = "{{ card(items[0]) }}|{{ card(note='k', p=items[1]) }}|{{ card(items[1], 'pos') }}"
    html = _same(_compose(tmp_path, body), {**_context(), "items": ITEMS, "now": dt.date.today()})
    assert "(k)" in html and "(pos)" in html


def test_an_empty_preheader_links_like_none(tmp_path: Path) -> None:
    files = {
        "t.html.j2": '---\nsubject: "Hi {{ customer.first_name }}"\npreheader: ""\n---\n'
        f"<p>x</p>{FOOT}\n",
        "partials/foot.html.j2": FOOT,
    }
    template = _library(tmp_path, files).get("t", "en")
    context = {**_context(), "mark": "m"}
    email = render_email(template, context, _linked(template, context))
    assert email == render_email(template, context)
    assert email.subject == "Hi Ann" and email.preheader is None


def test_parts_that_differ_in_their_statements_link_to_the_same_email(tmp_path: Path) -> None:
    # an {% if %} inside an attribute is in the HTML part only, not in the text part
    body = '<p class="{% if customer.first_name %}named{% endif %}">{{ grid(items, "T") }}</p>'
    template = _compose(tmp_path, body)
    context = {**_context(), "items": ITEMS}
    assert "named" in _same(template, context)


def test_a_macro_that_changes_its_files_state_is_refused(tmp_path: Path) -> None:
    counter = (
        "{% set seen = namespace(n=0) %}"
        "{% macro count() %}{% set seen.n = seen.n + 1 %}<p>{{ seen.n }}</p>{% endmacro %}"
    )
    imports = '{% from "partials/count.html.j2" import count %}'
    body = "{{ count() }}{{ count() }}"
    template = _compose(tmp_path, body, {"partials/count.html.j2": counter}, imports)
    context = {**_context(), "items": ITEMS}
    with pytest.raises(UnlinkableError, match="changes seen"):
        _linked(template, context)
    assert "<p>1</p><p>2</p>" in render_email(template, context).html


def test_objects_of_a_partial_stay_each_parts_own(tmp_path: Path) -> None:
    settings = '{% set cfg = namespace(sep="·") %}{% macro sep() %}[{{ cfg.sep }}]{% endmacro %}'
    imports = '{% from "partials/sep.html.j2" import sep %}'
    body = '{{ sep() }}{{ grid(items, "T") }}'
    template = _compose(tmp_path, body, {"partials/sep.html.j2": settings}, imports)
    context = {**_context(), "items": ITEMS}
    # the HTML and the text part each read their own file's namespace (two objects, never
    # taken for one value)
    assert "[·]" in _same(template, context)


_SNIPPETS = [
    "<p>Hi {{ customer.first_name }}</p>",
    "<h2>{{ shop.name }}</h2>\n",
    '<p><a href="{{ shop.url }}">{{ customer.first_name or "you" }}</a></p>',
    "<p>{{ n | money }}<br>{{ locale }}</p>",
    "\n\n",
    " ",
    "<ul><li>a</li></ul>",
    "{{ card(items[0]) }}",
]


def _bodies() -> st.SearchStrategy[str]:
    leaf = st.lists(st.sampled_from(_SNIPPETS), min_size=1, max_size=3).map("".join)

    def wrap(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        two = st.tuples(inner, inner)
        return st.one_of(
            two.map(lambda p: p[0] + p[1]),
            two.map(lambda p: "{% if flag %}" + p[0] + "{% else %}" + p[1] + "{% endif %}"),
            inner.map(lambda p: "{% for x in items %}<p>{{ x.kind }}</p>" + p + "{% endfor %}"),
            inner.map(
                lambda p: "{% set n = 2.5 %}{% with flag = not flag %}" + p + "{% endwith %}"
            ),
            inner.map(lambda p: '{{ grid(items, "T") }}' + p),
        )

    return st.recursive(leaf, wrap, max_leaves=6)


@pytest.mark.slow
@given(_bodies(), st.booleans(), st.sampled_from(["en", "hu"]))
@example(
    body="{% for x in items %}{% for x in items %}<p>{{ n | money }}</p>{% endfor %}"
    "{% set n = 2.5 %}{% endfor %}",
    flag=False,
    locale="en",
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_generated_templates_link_to_the_same_email(
    tmp_path: Path, body: str, flag: bool, locale: str
) -> None:
    template = _compose(tmp_path / uuid.uuid4().hex, body)
    context = {**_context(), "items": ITEMS, "flag": flag, "n": 3, "locale": locale}
    try:
        render_email(template, context)
    except TemplateError as written:
        # Jinja itself refuses some of these (a name read in a nested loop before the outer
        # loop sets it is undefined); the linked template must refuse it with the same error
        with pytest.raises(TemplateError) as fast:
            render_email(template, context, _linked(template, context))
        assert str(fast.value) == str(written)
        return
    _same(template, context)


def test_a_nul_inside_the_subject_renders_as_written(tmp_path: Path) -> None:
    files = {
        "t.html.j2": '---\nsubject: "Hi {{ customer.first_name }}"\npreheader: "For {{ shop.name }}"'
        f"\n---\n<p>x</p>{FOOT}\n",
        "partials/foot.html.j2": FOOT,
    }
    template = _library(tmp_path, files).get("t", "en")
    context = {**_context(first_name="A\x00B"), "mark": "m"}
    linked = _linked(template, context)
    with pytest.raises(ValueError, match="NUL"):
        linked.render(context)
    email = render_email(template, context, linked)
    assert email == render_email(template, context)
    assert email.preheader == "For Shop"


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("{{ order.order_id }} {{ order['total'] | money }}", False),
        ("{% if order %}{{ order.placed_at | date }}{% endif %}{{ 'x' if not order }}", False),
        ("{{ order is none }}", False),
        ("{{ order.items }}", True),
        ("{% for i in order['items'] %}{{ i.name }}{% endfor %}", True),
        ("{{ order }}", True),
        ("{{ order or 'none' }}", True),
        ("{{ order | tojson }}", True),
        ("{% set o = order %}{{ o.total }}", True),
        ("{% set order = customer %}{{ order.total }}", True),
        ("{{ order[customer.first_name] }}", True),
        ("{{ order == none }}", True),
    ],
)
def test_which_templates_read_the_order_lines(source: str, reads: bool) -> None:
    from clvflow.rendering.environment import html_environment
    from clvflow.rendering.linked import reads_order_items

    assert reads_order_items(html_environment(ROOT).parse(source)) is reads


def test_the_shipped_templates_that_read_order_lines(tmp_path: Path) -> None:
    context = make_context("en")
    reading = {n for n in NAMES if _linked(SHIPPED.get(n, "en"), context).reads_items}
    assert reading == {"thank_you", "feedback_request"}
