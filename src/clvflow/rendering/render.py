"""Render one email (subject, preheader, HTML with inlined CSS, text part) from a context."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import TemplateError as JinjaError
from jinja2.exceptions import SecurityError

from clvflow.errors import TemplateError
from clvflow.rendering.filters import formatting
from clvflow.rendering.linked import LinkedTemplate
from clvflow.rendering.templates import CompiledTemplate, template_location
from clvflow.rendering.textpart import header_text, html_to_text, tidy_text

__all__ = [  # header_text is used from here by delivery too
    "RenderedEmail",
    "check_compliance",
    "header_text",
    "naive_email",
    "render_email",
]


@dataclass(slots=True)
class RenderedEmail:
    """One rendered email (slotted, not frozen: one is built per message)."""

    subject: str
    preheader: str | None
    html: str
    text: str
    kind: str
    template: str
    locale: str | None


_INLINER = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


def _head(template: CompiledTemplate, context: Mapping[str, Any]) -> tuple[str, str | None]:
    """Subject and preheader, in one render when both exist (their sources hold no NUL)."""
    if template.head is not None:
        both, nul, second = template.head.render(context).partition("\x00")
        if nul and "\x00" not in second:
            return header_text(both), header_text(second)
    subject = header_text(template.subject.render(context))
    preheader = header_text(template.preheader.render(context)) if template.preheader else None
    return subject, preheader


def _linked_parts(
    linked: LinkedTemplate, context: Mapping[str, Any]
) -> tuple[str, str | None, str, str | None] | None:
    """Subject, preheader, HTML and text (None: derive it from the HTML) from the linked
    template, or None when it fails: the message is then rendered as written, which
    reports the error."""
    try:
        subject, preheader, body, text = linked.render(context)
    except Exception:  # rendered again as written, which raises with file and line
        return None
    return subject, preheader, body, tidy_text(text) if text is not None else None


def render_email(
    template: CompiledTemplate,
    context: Mapping[str, Any],
    linked: LinkedTemplate | None = None,
) -> RenderedEmail:
    """Render every part of ``template``; errors name the template file and line.

    ``linked``: the same template linked into one (``linked``), used when it was made for
    this context's locale and shop; the output is the same, in one render instead of
    three."""
    try:
        with formatting(context.get("locale"), context.get("currency")):
            parts = None
            if linked is not None and linked.applies(context):
                parts = _linked_parts(linked, context)
            if parts is None:
                subject, preheader = _head(template, context)
                full = {**context, "subject": subject, "preheader": preheader}
                body = template.html.render(full)
                text = tidy_text(template.text.render(full)) if template.text else None
            else:
                subject, preheader, body, text = parts
            if text is None:
                text = html_to_text(body)
    except SecurityError as exc:
        path, line = template_location(exc, template.html_path.parent)
        raise TemplateError(
            f"blocked by the sandbox: {exc}", path=path or template.html_path, line=line
        ) from None
    except JinjaError as exc:
        path, line = template_location(exc, template.html_path.parent)
        message = getattr(exc, "message", None) or str(exc)
        raise TemplateError(
            f"cannot render: {message}",
            path=path or template.html_path,
            line=line,
            hint="a template may use only the names in its context (see the README)",
        ) from None
    if not subject:
        raise TemplateError("the subject renders empty", path=template.html_path, key="subject")
    return RenderedEmail(
        subject=subject,
        preheader=preheader,
        html=body if template.css_inlined else _INLINER.inline(body),
        text=text,
        kind=template.front.kind,
        template=template.name,
        locale=template.locale,
    )


def naive_email(template: CompiledTemplate, context: Mapping[str, Any]) -> RenderedEmail:
    """The reference rendering, all per message: the template as written, css-inline on
    the result, html2text of the HTML. ``render_email`` must read the same (tests and
    ``bench/render.py`` check it)."""
    with formatting(context.get("locale"), context.get("currency")):
        subject = header_text(template.subject.render(context))
        preheader = header_text(template.preheader.render(context)) if template.preheader else None
        full = {**context, "subject": subject, "preheader": preheader}
        body = _INLINER.inline(template.source_html.render(full))
    return RenderedEmail(
        subject=subject,
        preheader=preheader,
        html=body,
        text=html_to_text(body),
        kind=template.front.kind,
        template=template.name,
        locale=template.locale,
    )


_SPECIAL = frozenset("&<>\"'")


@lru_cache(maxsize=256)
def _escaped_forms(value: str) -> tuple[str, ...]:
    """The forms to look for, the one an autoescaped template prints first."""
    forms = (html.escape(value, quote=False), html.escape(value), value)
    return tuple(dict.fromkeys(forms))


def _shows(markup: str, value: str) -> bool:
    """``value`` appears in ``markup`` as written, escaped, or escaped without quotes.

    (Searched from the end: the footer that shows both is at the end of a message.)"""
    if _SPECIAL.isdisjoint(value):  # escaping changes nothing (an unsubscribe link)
        return markup.rfind(value) >= 0
    return any(markup.rfind(form) >= 0 for form in _escaped_forms(value))


_FOOTER_SOURCES = (
    re.compile(r"\{%-?\s*(include|import|from)\b[^%]*footer"),
    re.compile(r"\{%-?\s*extends\b"),
)


def footer_line(path: Path) -> int | None:
    """The line of ``path`` a missing footer is to be fixed at: where it includes the footer
    partial, else where it extends its layout, else its last line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for pattern in _FOOTER_SOURCES:
        for number, line in enumerate(lines, start=1):
            if pattern.search(line):
                return number
    return len(lines) or None


def check_compliance(
    email: RenderedEmail, unsubscribe_url: str, postal_address: str, where: str | Path
) -> None:
    """Marketing mail must show the unsubscribe link and the shop's postal address.

    ``where``: the template file; the error names it and the line to fix it at."""
    if email.kind != "marketing":
        return
    missing = []
    if not _shows(email.html, unsubscribe_url):
        missing.append("the unsubscribe link ({{ unsubscribe_url }})")
    if not _shows(email.html, postal_address):
        missing.append("the shop's postal address ({{ shop.postal_address }})")
    if missing:
        path = Path(where)
        raise TemplateError(
            "marketing email lacks " + " and ".join(missing),
            path=path,
            line=footer_line(path),
            hint="include the shared footer partial (templates/partials/footer.html.j2) and "
            "keep both in it, or mark the template kind: transactional",
        )
