"""The text part of an email, derived once per template instead of once per message.

Instead of converting every rendered message's HTML to text, each HTML template file is
converted once: its Jinja tags are swapped for inert tokens, the HTML becomes text (html2text,
links kept as ``text (url)``), and the tokens are swapped back, giving a Jinja *text*
template that each message renders. Templates that cannot be converted that way (a Jinja
block split by an HTML comment, say) fall back to converting each rendered message.
"""

from __future__ import annotations

import re

import html2text

_COMMENT = re.compile(r"{#.*?#}", re.S)
_JINJA = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TOKEN = re.compile(r"JJX(\d{6})XJJ")
_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")
_BLANKS = re.compile("\n\n\n+")  # a literal prefix, which the regex engine searches for
_LINE_END_BLANKS = re.compile("\n[ \t\xa0]+")  # on reversed text
_TRAILING = re.compile(r"(JJX(\d{6})XJJ)?[ \t\xa0]+\n")
_RAW = re.compile(r"{%[-+]?\s*raw\b")


def _converter() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.inline_links = True
    converter.protect_links = False
    converter.wrap_links = False
    converter.ignore_emphasis = True
    converter.escape_snob = False
    return converter


def header_text(value: str) -> str:
    """One line for a header: CR, LF and other whitespace runs become single spaces."""
    return " ".join(value.split())


def tidy_text(text: str) -> str:
    """No trailing blanks, at most one empty line in a row, one final newline.

    (Two regular expressions on the reversed text, where the blanks that end a line follow
    its newline, so both patterns start with a newline.)"""
    reverse = _LINE_END_BLANKS.sub("\n", text[::-1])
    return _BLANKS.sub("\n\n", reverse)[::-1].strip() + "\n"


def _links(text: str) -> str:
    """``[Shop](https://x)`` → ``Shop (https://x)``; a bare ``[https://x](https://x)`` → the URL."""

    def one(match: re.Match[str]) -> str:
        label, url = match.group(1).strip(), match.group(2)
        return url if not label or label == url else f"{label} ({url})"

    return _LINK.sub(one, text)


def html_to_text(markup: str) -> str:
    """Readable text from rendered HTML (the per-message fallback)."""
    text: str = _converter().handle(_HTML_COMMENT.sub("", markup))
    return tidy_text(_links(text))


def text_template_from_html(source: str) -> str:
    """A Jinja text template equivalent to the HTML template ``source``."""
    tokens: list[str] = []

    def protect(match: re.Match[str]) -> str:
        tokens.append(match.group(0))
        return f"JJX{len(tokens) - 1:06d}XJJ"

    protected = _JINJA.sub(protect, _COMMENT.sub("", source))
    text: str = _converter().handle(_HTML_COMMENT.sub("", protected))
    text = _BLANKS.sub("\n\n", _links(text))
    if not _RAW.search(source):
        text = _without_trailing_blanks(text, tokens)
    return _TOKEN.sub(lambda m: tokens[int(m.group(1))], text)


def _without_trailing_blanks(text: str, tokens: list[str]) -> str:
    """Drop the blanks that end lines of the (token-protected) text template.

    ``tidy_text`` drops them from every message anyway; without them most messages have
    none left to drop. A statement tag that the blanks separated from the newline keeps it
    (``+%}``: trim_blocks would otherwise swallow the newline)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        if token is None:
            return "\n"
        index = int(match.group(2))
        tag = tokens[index]
        if tag.startswith("{%") and tag[-3] not in "-+":
            tokens[index] = tag[:-2] + "+%}"
        return token + "\n"

    return _TRAILING.sub(one, text)
