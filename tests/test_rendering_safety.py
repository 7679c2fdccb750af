"""Templates run sandboxed and autoescaped; mistakes are caught with file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from clvflow.errors import TemplateError
from clvflow.rendering.render import check_compliance, render_email
from clvflow.rendering.templates import TemplateLibrary

FOOTER = '<a href="{{ unsubscribe_url }}">unsubscribe</a> {{ shop.postal_address }}'
URL = "https://shop.example/email/unsubscribe/tok"
ADDRESS = "1 Test Street, 1000 Testville"


def _context(**customer: Any) -> dict[str, Any]:
    return {
        "customer": {"first_name": "Ann", **customer},
        "shop": {"name": "Shop", "postal_address": ADDRESS, "url": "https://shop.example"},
        "unsubscribe_url": URL,
        "locale": "en",
        "currency": "EUR",
        "now": dt.datetime(2026, 11, 23, 12),
        "order": None,
        "promo": None,
        "recommendations": [],
    }


def _library(tmp_path: Path, files: dict[str, str]) -> TemplateLibrary:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return TemplateLibrary(tmp_path, "en")


def _render(
    tmp_path: Path, body: str, subject: str = "Hi {{ customer.first_name }}", **customer: Any
):  # type: ignore[no-untyped-def]
    library = _library(
        tmp_path, {"t.html.j2": f'---\nsubject: "{subject}"\n---\n{body}\n{FOOTER}\n'}
    )
    return render_email(library.get("t", "en"), _context(**customer))


SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ customer.__class__.__base__.__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('id') }}",
    "{{ request.application.__globals__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ customer.update({'x': 1}) }}",
]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_injection_payloads_fail_inside_the_sandbox(tmp_path: Path, payload: str) -> None:
    with pytest.raises(TemplateError) as info:
        _render(tmp_path, f"<p>{payload}</p>")
    assert info.value.path is not None and info.value.path.name == "t.html.j2"


def test_customer_html_is_escaped(tmp_path: Path) -> None:
    email = _render(
        tmp_path, "<p>{{ customer.first_name }}</p>", first_name="<script>alert(1)</script>"
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>" not in email.html


def test_line_breaks_never_reach_the_subject(tmp_path: Path) -> None:
    email = _render(tmp_path, "<p>x</p>", first_name="Ann\r\nBcc: victim@example.com")
    assert "\r" not in email.subject and "\n" not in email.subject
    assert email.subject == "Hi Ann Bcc: victim@example.com"


def test_undefined_name_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        _render(tmp_path, "<p>one</p>\n<p>{{ customer.favourite_colour }}</p>")
    error = info.value
    assert error.path is not None and error.path.name == "t.html.j2"
    assert error.line == 5  # 3 lines of front matter, then line 4, then this one
    assert "favourite_colour" in error.render()


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    library = _library(tmp_path, {"t.html.j2": "---\nsubject: x\n---\n<p>\n{% if %}\n"})
    with pytest.raises(TemplateError) as info:
        library.get("t", "en")
    assert info.value.line == 5 and "syntax error" in info.value.render()


def test_marketing_mail_without_unsubscribe_fails_compliance(tmp_path: Path) -> None:
    library = _library(
        tmp_path, {"t.html.j2": "---\nsubject: x\n---\n<p>{{ shop.postal_address }}</p>\n"}
    )
    email = render_email(library.get("t", "en"), _context())
    with pytest.raises(TemplateError, match="unsubscribe link"):
        check_compliance(email, URL, ADDRESS, "t.html.j2")


@pytest.mark.parametrize(
    ("source", "line"),
    [
        (
            '---\nsubject: x\n---\n{% extends "layouts/base.html.j2" %}\n'
            "{% block body %}<p>x</p>{% endblock %}\n",
            4,
        ),
        ('---\nsubject: x\n---\n<p>x</p>\n{% include "partials/footer.html.j2" %}\n<p>y</p>\n', 5),
        ("---\nsubject: x\n---\n<p>x</p>\n<p>y</p>\n", 5),
    ],
)
def test_a_missing_footer_is_reported_at_the_line_to_fix(
    tmp_path: Path, source: str, line: int
) -> None:
    files = {
        "t.html.j2": source,
        "layouts/base.html.j2": "<html>{% block body %}{% endblock %}</html>",
        "partials/footer.html.j2": "<p>no link here</p>",
    }
    library = _library(tmp_path, files)
    email = render_email(library.get("t", "en"), _context())
    with pytest.raises(TemplateError) as info:
        check_compliance(email, URL, ADDRESS, tmp_path / "t.html.j2")
    assert (info.value.path, info.value.line) == (tmp_path / "t.html.j2", line)
    assert f"t.html.j2:{line}" in info.value.render()


def test_transactional_mail_needs_no_unsubscribe(tmp_path: Path) -> None:
    library = _library(
        tmp_path, {"t.html.j2": "---\nsubject: x\nkind: transactional\n---\n<p>receipt</p>\n"}
    )
    email = render_email(library.get("t", "en"), _context())
    check_compliance(email, URL, ADDRESS, "t.html.j2")
    assert email.kind == "transactional"


def test_locale_file_wins_and_falls_back(tmp_path: Path) -> None:
    library = _library(
        tmp_path,
        {
            "t.html.j2": "---\nsubject: Hello\n---\n<p>en</p>\n",
            "t.hu.html.j2": "---\nsubject: Szia\n---\n<p>hu</p>\n",
        },
    )
    assert library.get("t", "hu-HU").front.subject == "Szia"
    assert library.get("t", "ru").front.subject == "Hello"
    assert library.get("t", "ru").locale is None or library.get("t", "ru").locale == "en"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "€1,234.50"), ("hu", "1 234,50 EUR"), ("ru", "1 234,50 €")],
)
def test_money_is_formatted_for_the_locale(tmp_path: Path, locale: str, expected: str) -> None:
    library = _library(tmp_path, {"t.html.j2": "---\nsubject: x\n---\n[{{ 1234.5 | money }}]\n"})
    context = {**_context(), "locale": locale}
    email = render_email(library.get("t", locale), context)
    assert f"[{expected}]" in email.text.replace("\xa0", " ")


ORDER_PAYLOADS = [
    "{{ order.__class__.__mro__ }}",
    "{{ order.__init__.__globals__ }}",
    "{{ order.__dict__ }}",
    "{{ order.__dataclass_fields__ }}",
    "{{ order['items'].__class__.__base__.__subclasses__() }}",
    "{{ order.items.append(1) }}",
]


@pytest.mark.parametrize("payload", ORDER_PAYLOADS)
def test_the_shortcut_for_order_fields_keeps_the_sandbox(tmp_path: Path, payload: str) -> None:
    from clvflow.personalization.orders import OrderView

    library = _library(
        tmp_path, {"t.html.j2": f'---\nsubject: "x"\n---\n<p>{payload}</p>\n{FOOTER}\n'}
    )
    order = OrderView("O1", dt.datetime(2026, 11, 20, 9, 0), 50.0, "EUR", [{"name": "Cards"}])
    with pytest.raises(TemplateError):
        render_email(library.get("t", "en"), {**_context(), "order": order})


def test_order_fields_read_through_the_shortcut(tmp_path: Path) -> None:
    from clvflow.personalization.orders import OrderView

    body = "<p>{{ order.order_id }} {{ order.total | money }} {{ order['items'][0].name }}</p>"
    library = _library(tmp_path, {"t.html.j2": f'---\nsubject: "x"\n---\n{body}\n{FOOTER}\n'})
    order = OrderView("O1", dt.datetime(2026, 11, 20, 9, 0), 50.0, "EUR", [{"name": "Cards"}])
    email = render_email(library.get("t", "en"), {**_context(), "order": order})
    assert "O1 €50.00 Cards" in email.html
