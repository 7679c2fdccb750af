"""CSS inlined once per template instead of once per message.

css-inline turns the layout's ``<style>`` rules into ``style`` attributes. Doing that on every
rendered message costs more than rendering it, yet the elements a rule matches are fixed by
the template files. So each file of a template (layout, partials, the template itself) is
inlined once: Jinja tags are masked, css-inline styles the masked file, and the ``style``
attributes it computed are written into the template source at the same start tags.

That is only equivalent to inlining every message when the rules cannot match differently
at run time, which this module proves per template or refuses (``NotPrecomputableError``, and
the template is inlined per message instead):

- the CSS is static, in ``<style>`` elements of the one layout that has ``<html>``;
- selectors use only tags, classes, ids and descendant/child combinators (no attributes,
  pseudo-classes or sibling combinators, whose match depends on rendered data or siblings);
- ``class``, ``id`` and ``style`` attributes hold no Jinja, and no Jinja statement sits
  inside a tag;
- every ``{% if %}``/``{% for %}``/... block opens and closes the same elements, so control
  flow cannot change an element's ancestors;
- a rule with combinators either matches an element through ancestors in the same file, or
  the file is the layout itself (an element of a partial or of a block whose match would
  depend on where it is included is refused);
- nothing is printed with ``|safe`` (markup from data could carry elements of its own).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import cast

import css_inline
import cssselect
import tinycss2
from cssselect import parser as sel

OPTIONS = {"keep_style_tags": False, "load_remote_stylesheets": False}

_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)
_STATEMENT = re.compile(r"{%[-+]?\s*(\w+)(.*?)[-+]?%}", re.S)
_START = re.compile(r"<([a-zA-Z][a-zA-Z0-9:-]*)")
_ATTR = re.compile(r"""\s*([^\s/>"'=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_SAFE = re.compile(r"\|\s*safe\b")
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
    ]
)
_RAW = frozenset({"style", "script", "title", "textarea"})
_IMPLIED = frozenset({"html", "head", "body", "tbody"})
_OPENS = frozenset({"if", "for", "macro", "block", "call", "filter", "with", "autoescape", "trans"})
_MIDDLES = frozenset({"elif", "else", "pluralize"})


class NotPrecomputableError(Exception):
    """The template's CSS must be inlined per message; the message says why."""


@dataclass
class Element:
    tag: str
    classes: frozenset[str]
    id: str | None
    parent: Element | None
    insert_at: int  # where a new style attribute goes (just after the tag name)
    style_span: tuple[int, int] | None  # the value of an existing static style attribute
    chain: list[Element] = field(default_factory=list)


@dataclass
class ScannedFile:
    name: str
    source: str
    elements: list[Element]
    styles: list[tuple[int, int, str]]  # (start, end, css) of each <style> element
    is_document: bool
    # Elements open where other markup is inserted: a block, an include, a macro call.
    open_at_insertions: list[Element] = field(default_factory=list)


# -- scanning ---------------------------------------------------------------------------


def _mask(source: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Jinja tags become same-length runs of ``J`` (newlines kept); returns the tags."""
    tags: list[tuple[int, int, str]] = []

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        tags.append((match.start(), match.end(), text))
        filler = " " if text.startswith("{#") else "J"
        return "".join(c if c == "\n" else filler for c in text)

    return _JINJA.sub(one, source), tags


def _attributes(masked: str, start: int) -> tuple[int, list[tuple[str, int, int]], bool]:
    """Parse a start tag's attributes from ``start`` (after the name).

    Returns (index after ``>``, [(name, value start, value end)], self-closing)."""
    attrs: list[tuple[str, int, int]] = []
    pos = start
    while True:
        match = _ATTR.match(masked, pos)
        if not match or match.end() == pos:
            break
        value = match.group(2)
        if value is None:
            attrs.append((match.group(1).lower(), match.end(), match.end()))
        else:
            begin = match.start(2) + (1 if value[0] in "\"'" else 0)
            end = match.end(2) - (1 if value[0] in "\"'" else 0)
            attrs.append((match.group(1).lower(), begin, end))
        pos = match.end()
    rest = re.compile(r"\s*(/?)>").match(masked, pos)
    if rest is None:
        raise NotPrecomputableError("a start tag could not be read (Jinja inside a tag?)")
    return rest.end(), attrs, rest.group(1) == "/"


def captured_names(sources: Mapping[str, str]) -> frozenset[str]:
    """Names that may hold markup: ``{% set x %}...{% endset %}``, ``{% set x = m() %}``."""
    names: set[str] = set()
    for source in sources.values():
        for found in _STATEMENT.finditer(source):
            if found.group(1) != "set":
                continue
            target, equals, value = found.group(2).partition("=")
            if not equals or "(" in value:
                names.update(re.findall(r"[A-Za-z_]\w*", target))
    return frozenset(names)


def _inserts_markup(expression: str, captured: frozenset[str]) -> bool:
    """An expression that may print markup: a call (macro, caller, super) or a capture."""
    return "(" in expression or any(n in captured for n in re.findall(r"\w+", expression))


def _html_events(
    name: str, source: str, masked: str, events: list[tuple[int, str, object]]
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, list[tuple[str, int, int]]]], bool]:
    """Append start/end tag events (outside comments); return <style> spans, tag spans and
    whether the file is a whole document."""
    styles: list[tuple[int, int, str]] = []
    tag_spans: list[tuple[int, int, list[tuple[str, int, int]]]] = []
    pos = 0
    document = False
    while True:
        pos = masked.find("<", pos)
        if pos < 0:
            break
        if masked.startswith("<!--", pos):
            end = masked.find("-->", pos + 4)
            pos = len(masked) if end < 0 else end + 3
            continue
        if masked.startswith("<!", pos) or masked.startswith("<?", pos):
            end = masked.find(">", pos)
            pos = len(masked) if end < 0 else end + 1
            continue
        closing = re.compile(r"</([a-zA-Z][a-zA-Z0-9:-]*)\s*>").match(masked, pos)
        if closing:
            events.append((pos, "end", closing.group(1).lower()))
            pos = closing.end()
            continue
        opening = _START.match(masked, pos)
        if not opening:
            pos += 1
            continue
        tag = opening.group(1).lower()
        after, attrs, self_closing = _attributes(masked, opening.end())
        tag_spans.append((pos, after, attrs))
        events.append((pos, "start", (tag, opening.end(), attrs, self_closing)))
        document = document or tag == "html"
        pos = after
        if tag in _RAW:
            end = masked.lower().find(f"</{tag}", after)
            if end < 0:
                raise NotPrecomputableError(f"{name}: <{tag}> is not closed")
            close = masked.find(">", end) + 1
            if tag == "style":
                styles.append((opening.start(), close, source[after:end]))
                if source[after:end] != masked[after:end]:
                    raise NotPrecomputableError(f"{name}: a <style> element contains Jinja")
            events.append((end, "end", tag))
            pos = close
    return styles, tag_spans, document


def scan(name: str, source: str, captured: frozenset[str] = frozenset()) -> ScannedFile:
    """Elements with their in-file ancestors; checks tags and blocks are balanced."""
    masked, tags = _mask(source)
    if _SAFE.search(source):
        raise NotPrecomputableError(f"{name}: prints markup with |safe")
    events: list[tuple[int, str, object]] = []
    statements = []
    for begin, end, text in tags:
        found = _STATEMENT.match(text)
        if found:
            statements.append((begin, end))
            keyword = found.group(1)
            if keyword == "set" and "=" not in found.group(2):
                keyword = "setblock"
            if keyword == "raw":
                raise NotPrecomputableError(f"{name}: uses {{% raw %}}")
            events.append((begin, "stmt", keyword))
            if keyword in ("block", "include"):
                events.append((begin, "insert", None))
        elif text.startswith("{{") and _inserts_markup(text[2:-2], captured):
            events.append((begin, "insert", None))
    elements: list[Element] = []
    styles, tag_spans, document = _html_events(name, source, masked, events)
    for begin, _end in statements:
        for tag_begin, tag_end, _ in tag_spans:
            if tag_begin < begin < tag_end:
                raise NotPrecomputableError(f"{name}: a Jinja statement inside an HTML tag")
    inside_tags = set()
    for begin, end, text in tags:
        if text.startswith("{{"):
            for tag_begin, tag_end, attrs in tag_spans:
                if tag_begin < begin < tag_end:
                    inside_tags.add(begin)
                    owner = next((a for a in attrs if a[1] <= begin and end <= a[2]), None)
                    if owner is None or owner[0] in {"class", "id", "style"}:
                        raise NotPrecomputableError(
                            f"{name}: Jinja in a tag outside an attribute value, "
                            "or in a class, id or style attribute"
                        )
    events = sorted(
        (e for e in events if e[0] not in inside_tags or e[1] != "insert"), key=lambda e: e[0]
    )
    scanned = ScannedFile(name, source, elements, styles, document)
    _walk(scanned, events)
    return scanned


def _walk(scanned: ScannedFile, events: list[tuple[int, str, object]]) -> None:
    name, source, out = scanned.name, scanned.source, scanned.elements
    stack: list[Element] = []
    blocks: list[int] = []
    for _, kind, data in events:
        if kind == "insert":
            scanned.open_at_insertions.extend(
                e for e in stack if e not in scanned.open_at_insertions
            )
        elif kind == "stmt":
            keyword = str(data)
            if keyword in _OPENS or keyword == "setblock":
                blocks.append(len(stack))
            elif keyword in _MIDDLES or keyword.startswith("end"):
                if not blocks or blocks[-1] != len(stack):
                    raise NotPrecomputableError(
                        f"{name}: a Jinja block opens or closes an HTML element in one branch only"
                    )
                if keyword.startswith("end"):
                    blocks.pop()
        elif kind == "start":
            tag, name_end, attrs, self_closing = cast(
                tuple[str, int, list[tuple[str, int, int]], bool], data
            )
            values = {a: source[b:e] for a, b, e in attrs}
            style = next(((b, e) for a, b, e in attrs if a == "style"), None)
            element = Element(
                tag=tag,
                classes=frozenset(values.get("class", "").split()),
                id=values.get("id"),
                parent=stack[-1] if stack else None,
                insert_at=name_end,
                style_span=style,
            )
            element.chain = [*stack, element]
            out.append(element)
            if tag in _VOID:
                continue
            if self_closing:
                raise NotPrecomputableError(f"{name}: <{tag}/> is not a void element")
            stack.append(element)
        else:
            if not stack or stack[-1].tag != data:
                raise NotPrecomputableError(f"{name}: </{data}> does not close the open element")
            stack.pop()
    if stack or blocks:
        raise NotPrecomputableError(f"{name}: unclosed HTML elements or Jinja blocks")


# -- selectors --------------------------------------------------------------------------


@dataclass(frozen=True)
class Compound:
    tag: str | None
    classes: frozenset[str]
    id: str | None

    def matches(self, element: Element) -> bool:
        return (
            (self.tag is None or self.tag == element.tag)
            and self.classes <= element.classes
            and (self.id is None or self.id == element.id)
        )


Selector = tuple[list[Compound], list[str]]  # compounds left to right, combinators between


def _compound(tree: object) -> Compound:
    classes: set[str] = set()
    ident: str | None = None
    while not isinstance(tree, sel.Element):
        if isinstance(tree, sel.Class):
            classes.add(tree.class_name)
            tree = tree.selector
        elif isinstance(tree, sel.Hash):
            ident = tree.id
            tree = tree.selector
        else:
            raise NotPrecomputableError(f"CSS selector part {tree!r} depends on rendered content")
    tag = None if tree.element in (None, "*") else str(tree.element).lower()
    return Compound(tag, frozenset(classes), ident)


def parse_selectors(css: str) -> list[Selector]:
    """Every selector of the stylesheet, if all of them are in the static subset."""
    out: list[Selector] = []
    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type == "at-rule":
            raise NotPrecomputableError(f"CSS at-rule @{rule.at_keyword}")
        if rule.type != "qualified-rule":
            raise NotPrecomputableError("the stylesheet does not parse")
        text = tinycss2.serialize(rule.prelude).strip()
        try:
            parsed = cssselect.parse(text)
        except cssselect.SelectorError:
            raise NotPrecomputableError(f"CSS selector {text!r} does not parse") from None
        for selector in parsed:
            if selector.pseudo_element is not None:
                raise NotPrecomputableError(f"CSS selector {text!r} has a pseudo-element")
            compounds: list[Compound] = []
            combinators: list[str] = []
            tree: object = selector.parsed_tree
            while isinstance(tree, sel.CombinedSelector):
                if tree.combinator not in (" ", ">"):
                    raise NotPrecomputableError(f"CSS selector {text!r} uses a sibling combinator")
                compounds.insert(0, _compound(tree.subselector))
                combinators.insert(0, tree.combinator)
                tree = tree.selector
            compounds.insert(0, _compound(tree))
            out.append((compounds, combinators))
    return out


def _matches(selector: Selector, chain: list[Element]) -> bool:
    compounds, combinators = selector

    def at(k: int, index: int) -> bool:
        if not compounds[k].matches(chain[index]):
            return False
        if k == 0:
            return True
        if combinators[k - 1] == ">":
            return index > 0 and at(k - 1, index - 1)
        return any(at(k - 1, j) for j in range(index - 1, -1, -1))

    return at(len(compounds) - 1, len(chain) - 1)


def check_context_free(
    scanned: ScannedFile, selectors: list[Selector], outer: list[Element]
) -> None:
    """Refuse a file where a combinator rule's match could depend on outer ancestors.

    The elements of a file other than the layout get their outer ancestors where the file's
    markup is inserted: ``outer`` holds every element open at such a place. A rule that
    does not match inside the file, and one of whose ancestor parts matches an element of
    ``outer``, might match once the file is used; such a file is refused."""
    if scanned.is_document:
        return
    combined = [s for s in selectors if len(s[0]) > 1]
    for element in scanned.elements:
        for selector in combined:
            if (
                selector[0][-1].matches(element)
                and not _matches(selector, element.chain)
                and any(c.matches(o) for c in selector[0][:-1] for o in outer)
            ):
                raise NotPrecomputableError(
                    f"{scanned.name}: whether a CSS rule applies to <{element.tag}> depends "
                    "on where the file is used"
                )


# -- inlining ---------------------------------------------------------------------------


class _StartTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs).get("style")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _styles_of(markup: str) -> list[tuple[str, str | None]]:
    parser = _StartTags()
    parser.feed(markup)
    parser.close()
    return parser.tags


def _align(scanned: ScannedFile, inlined: str) -> Iterator[tuple[Element, str | None]]:
    produced = iter(_styles_of(inlined))
    for element in scanned.elements:
        if element.tag == "style":
            continue
        for tag, style in produced:
            if tag == element.tag:
                yield element, style
                break
            if tag not in _IMPLIED:
                raise NotPrecomputableError(f"{scanned.name}: the HTML parser restructured <{tag}>")
        else:
            raise NotPrecomputableError(f"{scanned.name}: the HTML parser dropped <{element.tag}>")
    for tag, _ in produced:
        if tag not in _IMPLIED:
            raise NotPrecomputableError(f"{scanned.name}: the HTML parser added <{tag}>")


def styled_source(scanned: ScannedFile, css: str) -> str:
    """The file's source with the style attributes css-inline computes for it."""
    masked, _ = _mask(scanned.source)
    if scanned.is_document:
        inlined = css_inline.CSSInliner(**OPTIONS).inline(masked)  # type: ignore[arg-type]
    else:
        inlined = css_inline.inline_fragment(masked, css, **OPTIONS)  # type: ignore[arg-type]
    edits: list[tuple[int, int, str]] = []
    for element, style in _align(scanned, inlined):
        if style is None:
            continue
        if any(mark in style for mark in ("{{", "{%", "{#")):
            raise NotPrecomputableError(f"{scanned.name}: a CSS value looks like Jinja")
        value = style.replace("&", "&amp;").replace('"', "&quot;")
        if element.style_span is not None:
            edits.append((*element.style_span, value))
        else:
            edits.append((element.insert_at, element.insert_at, f' style="{value}"'))
    edits += [(start, end, "") for start, end, _ in scanned.styles]
    text = scanned.source
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def preinline(files: Mapping[str, str]) -> dict[str, str]:
    """Styled sources for all files of one template (name → front-matter-free body)."""
    captured = captured_names(files)
    scanned = {name: scan(name, source, captured) for name, source in files.items()}
    layouts = [s for s in scanned.values() if s.is_document]
    if len(layouts) > 1:
        raise NotPrecomputableError("more than one file has <html>")
    for s in scanned.values():
        if s.styles and not s.is_document:
            raise NotPrecomputableError(f"{s.name}: <style> outside the layout")
    css = "\n".join(css for _, _, css in layouts[0].styles) if layouts else ""
    if not css.strip():
        return dict(files)
    selectors = parse_selectors(css)
    outer = [e for s in scanned.values() for e in s.open_at_insertions]
    for s in scanned.values():
        check_context_free(s, selectors, outer)
    return {name: styled_source(s, css) for name, s in scanned.items()}
