"""The rendering engine's shortcuts give what plain Jinja gives: the sandbox reading dict
keys directly, memoized pure macros, memoized Babel formatting, line-end blanks removed at
compile time, text tidying, the signer of unsubscribe tokens."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from clvflow.compliance.unsubscribe import Signer, list_unsubscribe_headers, make_token
from clvflow.rendering.blanks import strip_line_end_blanks, trim_empty_lines
from clvflow.rendering.environment import html_environment, text_environment
from clvflow.rendering.filters import FILTERS, formatting
from clvflow.rendering.memo import freeze, is_pure
from clvflow.rendering.textpart import tidy_text


class Box:
    """An object with an attribute (the sandbox's own getattr path)."""

    name = "box"


VALUES: dict[str, Any] = {
    "s": "Ann & <Bob> \"q\" 'x' 100%",
    "m": Markup("<b>safe</b>"),
    "i": 7,
    "f": -0.0,
    "n": None,
    "b": True,
    "d": {"name": "<n>", "items": [1, 2], "keys": "k", "get": "g"},
    "sub": type("Sub", (dict,), {})(name="sub"),
    "o": Box(),
    "l": [1, "<2>"],
}
TEMPLATES = [
    "a{{ s }}b%s{{ m }}c%%{{ i }}{{ f }}{{ n }}{{ b }}",
    "{{ d.name }} {{ d.keys }} {{ d['keys'] }} {{ d.get }} {{ d.items }} {{ sub.name }}",
    "{{ o.name }}{{ l }}{{ l[1] }}{% for x in l %}[{{ x }}{{ loop.index }}]{% endfor %}",
    "{% set t %}{{ s }}%{{ m }}{% endset %}{{ t }}|{{ t | length }}",
    "{% macro k(a, b='%') %}<{{ a }}{{ b }}>{% endmacro %}{{ k(s) }}{{ k(m, i) }}",
    "{% if d.name %}{{ d.name | upper }}{% else %}none{% endif %}{{ 'x%sy' % i }}",
]


def _plain_jinja(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


@pytest.mark.parametrize("autoescape", [True, False])
@pytest.mark.parametrize("source", TEMPLATES)
def test_the_sandbox_renders_what_jinja_renders(source: str, autoescape: bool) -> None:
    ours = (html_environment if autoescape else text_environment)(Path("."))
    with formatting("en", "EUR"):
        expected = _plain_jinja(autoescape).from_string(source).render(VALUES)
        assert ours.from_string(source).render(VALUES) == expected


@pytest.mark.parametrize("source", ["{{ d.missing }}", "{{ n.name }}", "{{ nothing.name }}"])
def test_missing_keys_and_names_are_still_errors(source: str) -> None:
    with pytest.raises(UndefinedError):
        html_environment(Path(".")).from_string(source).render(VALUES)


@pytest.mark.parametrize("source", ["{{ d.__class__ }}", "{{ d.update }}", "{{ o.__dict__ }}"])
def test_the_direct_key_read_keeps_the_sandbox(source: str) -> None:
    with pytest.raises(SecurityError):
        html_environment(Path(".")).from_string(source).render(VALUES)


def _write(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)


def test_pure_macro_calls_are_memoized_and_keyed_by_type(tmp_path: Path) -> None:
    _write(tmp_path, {"m.html.j2": "{% macro show(v) %}[{{ v }}]{% endmacro %}"})
    env = html_environment(tmp_path)
    page = env.from_string('{% from "m.html.j2" import show %}{{ show(v) }}')
    outputs = []
    for value in [1, 1.0, True, Markup("<i>"), "<i>", 1, "<i>"]:
        outputs.append(page.render(v=value))
    assert outputs == ["[1]", "[1.0]", "[True]", "[<i>]", "[&lt;i&gt;]", "[1]", "[&lt;i&gt;]"]
    assert len(env.memo.macros) == 1 and len(env.memo.results) == 5


@pytest.mark.parametrize(
    "partial",
    [
        "{% macro m() %}{{ [1, 2] | random }}{% endmacro %}",
        "{% set c = cycler('a', 'b') %}{% macro m() %}{{ c.next() }}{% endmacro %}",
        "{% set ns = namespace(n=0) %}{% macro m() %}{% set ns.n = ns.n + 1 %}{% endmacro %}",
        '{% macro m() %}{% include "other.html.j2" %}{% endmacro %}',
    ],
)
def test_stateful_or_random_partials_are_not_memoized(tmp_path: Path, partial: str) -> None:
    _write(tmp_path, {"m.html.j2": partial, "other.html.j2": "o"})
    env = html_environment(tmp_path)
    env.from_string('{% from "m.html.j2" import m %}{{ m() }}').render()
    assert not env.memo.macros
    assert not is_pure(env.parse(partial))


def test_a_cycler_in_a_partial_still_cycles(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {"m.html.j2": "{% set c = cycler('a', 'b') %}{% macro m() %}{{ c.next() }}{% endmacro %}"},
    )
    page = html_environment(tmp_path).from_string('{% from "m.html.j2" import m %}{{ m() }}')
    assert [page.render() for _ in range(3)] == ["a", "b", "a"]


def test_freeze_tells_apart_values_that_render_differently() -> None:
    keys = [freeze(v) for v in (1, 1.0, True, "1", Markup("1"), dt.date(2026, 1, 1))]
    assert len(set(keys)) == len(keys)
    assert freeze({"a": 1}) != freeze({"a": 1.0}) != freeze({"a": True})
    with pytest.raises(Exception):  # noqa: B017 (zero, lists and aware datetimes are not keyed)
        freeze(0.0)
    with pytest.raises(Exception):  # noqa: B017
        freeze([1])
    with pytest.raises(Exception):  # noqa: B017
        freeze(dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))


def _filter(source: str, locale: str = "en", **values: Any) -> str:
    env = text_environment(Path("."))
    with formatting(locale, "EUR"):
        return env.from_string(source).render(locale=locale, currency="EUR", **values)


def test_memoized_formatting_keeps_the_sign_of_zero_and_the_zone() -> None:
    assert _filter("{{ 0.0 | money }} {{ -0.0 | money }} {{ 0.0 | money }}") == (
        "€0.00 -€0.00 €0.00"
    )
    utc = dt.datetime(2026, 1, 1, 12, tzinfo=ZoneInfo("UTC"))
    budapest = utc.astimezone(ZoneInfo("Europe/Budapest"))
    assert utc == budapest
    once = _filter("{{ a | datetime('HH:mm') }} {{ b | datetime('HH:mm') }}", a=utc, b=budapest)
    assert once == "12:00 13:00"
    assert _filter("{{ 15 | percent }}", "ru").replace("\xa0", " ") == "15 %"
    assert _filter("{{ 1234.5 | number(1) }}", "hu").replace("\xa0", " ") == "1 234,5"


def _reference_tidy(text: str) -> str:
    """The straightforward definition ``tidy_text`` must keep."""
    lines = [line.rstrip(" \t\xa0") for line in text.split("\n")]
    joined = "\n".join(lines)
    while "\n\n\n" in joined:
        joined = joined.replace("\n\n\n", "\n\n")
    return joined.strip() + "\n"


@given(st.text(alphabet=" \t\xa0\nab€", max_size=60))
@settings(max_examples=400, deadline=None)
def test_tidy_text_is_the_reference(text: str) -> None:
    assert tidy_text(text) == _reference_tidy(text)


BLANK_CASES = [
    "a {% if x %}b{% endif %} \n{% for i in xs %}{{ i }} {% endfor %}\nc  ",
    "{% for i in xs %} {% if i %}{{ i }}{% endif %} \n{% endfor %} {% if x %} {% endif %}\n",
    "{% for i in xs %}\n{{ i }}  {% else %} none {% endfor %}   {{ x }} \n",
    "x {% with y = 1 %} {% endwith %}\n{% set z %} a {% endset %}{{ z }} \n",
    "\n\na\n\n{% if x %}\n\nb\n\n{% endif %}\n\n\nc{% for i in xs %}\n\n{{ i }}\n{% endfor %}\n\nd",
    "a\n{% if x %}{{ x }}\n{% else %}\n\n{% endif %}\n\nb\n \n\n{{ x }}\n\n\n",
    "{% for i in xs %}{% if i %}\n\n{% endif %}\n{{ i }}{% endfor %}\n\n\nz",
]


@pytest.mark.parametrize("source", BLANK_CASES)
def test_removing_blanks_and_empty_lines_keeps_the_tidied_text(source: str) -> None:
    env = text_environment(Path("."))
    written = env.from_string(source)
    tree = env.parse(source)
    strip_line_end_blanks(tree.body)
    trim_empty_lines(tree.body)
    stripped = env.from_string(tree)
    for xs in ([], [1], [0, 2, 3], ["", " ", "a", "\n", "b\n\n"]):
        for x in ("", " ", "v", "\n", "v\n\n"):
            a, b = written.render(xs=xs, x=x), stripped.render(xs=xs, x=x)
            assert tidy_text(b) == tidy_text(a), (xs, x)


def test_line_end_blanks_before_a_newline_are_removed() -> None:
    env = text_environment(Path("."))
    tree = env.parse("a {% if x %}b{% endif %} \n{% for i in xs %}{{ i }} {% endfor %}\nc")
    strip_line_end_blanks(tree.body)
    text = env.from_string(tree).render(x=True, xs=[1, 2])
    assert text == "a b\n1 2 c"  # the blank after a value stays (another value may follow)


@given(st.text(alphabet="AZaz09-_.~ +/=%", min_size=1, max_size=20), st.text(max_size=10))
@settings(max_examples=200, deadline=None)
def test_the_signer_and_the_header_shortcut_match(customer: str, campaign: str) -> None:
    key = b"k" * 32
    token = Signer(key).token(customer, campaign)
    assert token == make_token(key, customer, campaign)
    header = list_unsubscribe_headers("https://x/u/" + token, "u@x", token)["List-Unsubscribe"]
    assert header.endswith(f"?subject={quote(f'unsubscribe {token}')}>")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


_PIECES = ["\n", "\n\n", "\n\n\n", " ", "  \n", "\xa0", "a", "b ", " c\n", "{{ x }}", "{{ y }}"]


def _templates() -> st.SearchStrategy[str]:
    leaf = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4).map("".join)

    def wrap(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        two = st.tuples(inner, inner)
        return st.one_of(
            two.map(lambda p: p[0] + p[1]),
            inner.map(lambda p: "{% if x %}" + p + "{% endif %}"),
            two.map(lambda p: "{% if y %}" + p[0] + "{% else %}" + p[1] + "{% endif %}"),
            inner.map(lambda p: "{% for i in xs %}" + p + "{{ i }}{% endfor %}"),
            two.map(lambda p: "{% for i in xs %}" + p[0] + "{% else %}" + p[1] + "{% endfor %}"),
            inner.map(lambda p: "{% with z = 1 %}" + p + "{% endwith %}"),
        )

    return st.recursive(leaf, wrap, max_leaves=8)


@given(_templates())
@settings(max_examples=300, deadline=None)
def test_compile_time_tidying_never_changes_the_tidied_text(source: str) -> None:
    env = text_environment(Path("."))
    written = env.from_string(source)
    tree = env.parse(source)
    strip_line_end_blanks(tree.body)
    trim_empty_lines(tree.body)
    tidied = env.from_string(tree)
    for xs in ([], ["\n"], ["", " a "], ["b\n\n", "\n \n"]):
        for x, y in (("", ""), (" ", "v"), ("\n", "\n\n"), ("v \n", " "), ("w", "")):
            a = written.render(xs=xs, x=x, y=y)
            assert tidy_text(tidied.render(xs=xs, x=x, y=y)) == tidy_text(a), (xs, x, y)
