"""CSS inlined once per template reads exactly like css-inline run on every message, and a
template whose rules could match differently at run time is refused (and then inlined per
message, with the same result)."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_compare import html_differences, text_differences

from clvflow.rendering.render import naive_email, render_email
from clvflow.rendering.templates import TemplateLibrary
from tests.conftest import ROOT
from tests.test_rendering_safety import _context
from tests.test_shipped_templates_content import LOCALES, NAMES, make_context

SHIPPED = TemplateLibrary(ROOT / "templates", "en")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES)
def test_shipped_templates_read_the_same_as_inlining_every_message(name: str, locale: str) -> None:
    template = SHIPPED.get(name, locale)
    assert template.css_inlined, template.inline_reason
    context = make_context(locale)
    fast, naive = render_email(template, context), naive_email(template, context)
    assert "<style" not in fast.html and 'style="' in fast.html
    assert html_differences(fast.html, naive.html) == []
    assert text_differences(fast.text, naive.text) == []
    assert (fast.subject, fast.preheader) == (naive.subject, naive.preheader)


LAYOUT = """<!DOCTYPE html><html><head><style>{css}</style></head><body>
<div class="content">{{% block content %}}{{% endblock %}}</div>
<p class="footer"><a href="{{{{ unsubscribe_url }}}}">unsubscribe</a> {{{{ shop.postal_address }}}}</p>
</body></html>
"""


def _library(tmp_path: Path, css: str, body: str) -> TemplateLibrary:
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "base.html.j2").write_text(LAYOUT.format(css=css))
    (tmp_path / "t.html.j2").write_text(
        '---\nsubject: "Hi"\n---\n{% extends "layouts/base.html.j2" %}\n'
        "{% block content %}" + body + "{% endblock %}\n"
    )
    return TemplateLibrary(tmp_path, "en")


REFUSED = [
    ("p { color: red } .content p { margin: 0 }", "<p>x</p>", "depends on where"),
    ("p:first-child { color: red }", "<p>x</p>", "depends on rendered content"),
    ("a[href] { color: red }", "<p>x</p>", "depends on rendered content"),
    ("h1 + p { color: red }", "<p>x</p>", "sibling combinator"),
    ("p { color: red }", "{% if customer.first_name %}<div>{% endif %}<p>x</p>", "one branch"),
    ("p { color: red }", '<p class="{{ customer.first_name }}">x</p>', "class"),
    ("p { color: red }", "<p>{{ customer.first_name | safe }}</p>", "|safe"),
    ("@media (max-width: 600px) { p { color: red } }", "<p>x</p>", "at-rule"),
]


@pytest.mark.parametrize(("css", "body", "reason"), REFUSED)
def test_rules_that_could_match_differently_are_inlined_per_message(
    tmp_path: Path, css: str, body: str, reason: str
) -> None:
    template = _library(tmp_path, css, body).get("t", "en")
    assert not template.css_inlined
    assert reason in (template.inline_reason or "")
    context = _context(first_name="Ann")
    fast, naive = render_email(template, context), naive_email(template, context)
    assert fast.html == naive.html


ACCEPTED = [
    ".box p { color: red } p { margin: 0 }",
    "#intro { color: red } .box > p.lead { margin: 0 } strong { font-weight: bold }",
]


@pytest.mark.parametrize("css", ACCEPTED)
def test_rules_decided_inside_the_file_are_inlined_once(tmp_path: Path, css: str) -> None:
    body = (
        '<div class="box"><p class="lead" id="intro">Hi {{ customer.first_name }}</p>'
        "{% for i in [1, 2] %}<p><strong>{{ i }}</strong></p>{% endfor %}</div>"
    )
    template = _library(tmp_path, css, body).get("t", "en")
    assert template.css_inlined, template.inline_reason
    context = _context(first_name="<b>Ann</b>")
    fast, naive = render_email(template, context), naive_email(template, context)
    assert html_differences(fast.html, naive.html) == []
    assert "&lt;b&gt;Ann&lt;/b&gt;" in fast.html
