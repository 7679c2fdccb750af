"""Are two renderings of an email the same to its reader? A test oracle.

The fast path (CSS inlined once per template, text part derived once) must give what the
plain path gives (render, inline CSS with css-inline, convert the HTML to text) for every
message. Markup may differ in spelling (attribute order, ``&emsp;`` or the character, an
implied ``<tbody>``); what must not differ is the visible text, every element with its
computed style and link, and the text part's words and links. Used by the tests
(``from render_compare import ...``) and ``bench/render.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_IGNORED_TAGS = frozenset({"tbody"})
_URL = re.compile(r"(?:https?|mailto):[^\s)>\]]+")
_WORD = re.compile(r"\w+")


def _style(value: str | None) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    out = []
    for declaration in value.split(";"):
        name, colon, val = declaration.partition(":")
        if colon:
            out.append((name.strip().lower(), " ".join(val.split())))
    return tuple(out)


@dataclass
class Reading:
    """What a reader gets from an HTML email: elements (tag, style, link) and text."""

    elements: list[tuple[str, tuple[tuple[str, str], ...], str | None]] = field(
        default_factory=list
    )
    text: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.reading = Reading()
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        if tag in _IGNORED_TAGS:
            return
        values = dict(attrs)
        self.reading.elements.append((tag, _style(values.get("style")), values.get("href")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.reading.text.extend(data.split())


def read_html(markup: str) -> Reading:
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    return reader.reading


def html_differences(fast: str, reference: str, limit: int = 3) -> list[str]:
    """How ``fast`` reads differently from ``reference``; empty when they read the same."""
    a, b = read_html(fast), read_html(reference)
    out: list[str] = []
    if a.text != b.text:
        at = next((i for i, (x, y) in enumerate(zip(a.text, b.text, strict=False)) if x != y), 0)
        out.append(
            f"visible text differs at word {at}: {' '.join(a.text[at : at + 8])!r} "
            f"vs {' '.join(b.text[at : at + 8])!r}"
        )
    if len(a.elements) != len(b.elements):
        out.append(f"{len(a.elements)} elements vs {len(b.elements)}")
    for i, (x, y) in enumerate(zip(a.elements, b.elements, strict=False)):
        if x != y and len(out) < limit:
            out.append(f"element {i}: {x} vs {y}")
    return out


def text_differences(fast: str, reference: str) -> list[str]:
    """Text parts that differ in their words or their links (in order)."""
    out: list[str] = []
    if _URL.findall(fast) != _URL.findall(reference):
        out.append(f"links differ: {_URL.findall(fast)} vs {_URL.findall(reference)}")
    words_a, words_b = _WORD.findall(fast), _WORD.findall(reference)
    if sorted(words_a) != sorted(words_b):
        extra = sorted(set(words_a) ^ set(words_b))[:10]
        out.append(f"words differ ({len(words_a)} vs {len(words_b)}; e.g. {extra})")
    return out
