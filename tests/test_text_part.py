"""The text part derived once per template says what the per-message conversion says."""

from __future__ import annotations

import re

import pytest

from clvflow.rendering.filters import formatting
from clvflow.rendering.render import render_email
from clvflow.rendering.templates import TemplateLibrary
from clvflow.rendering.textpart import html_to_text, text_template_from_html
from tests.conftest import ROOT
from tests.test_shipped_templates_content import LOCALES, NAMES, make_context

LIBRARY = TemplateLibrary(ROOT / "templates", "en")


def _words(text: str) -> list[str]:
    return sorted(re.findall(r"\w+", text))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES)
def test_derived_text_has_the_same_words_as_the_rendered_html(name: str, locale: str) -> None:
    template = LIBRARY.get(name, locale)
    assert template.text is not None, "the text part should be derived once, not per message"
    context = make_context(locale)
    email = render_email(template, context)
    with formatting(context["locale"], context["currency"]):
        html_body = template.source_html.render(
            {**context, "subject": email.subject, "preheader": email.preheader}
        )
    assert _words(email.text) == _words(html_to_text(html_body))


def test_jinja_inside_attributes_and_loops_survives() -> None:
    source = (
        '<p>Hi {{ name }}</p>{% for p in items %}<a href="{{ p.url }}">{{ p.name }}</a>{% endfor %}'
    )
    text = text_template_from_html(source)
    assert "{{ name }}" in text and "{% for p in items %}" in text and "({{ p.url }})" in text
