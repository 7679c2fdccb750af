"""Segment mistakes become errors that name the file, the line and the key (for bad YAML,
the line and column), say what is wrong and how to fix it; the CLI prints them and exits 3."""

from __future__ import annotations

import pytest

from clvflow.cli.main import main
from clvflow.data.sources import open_shop_data
from clvflow.errors import SegmentError
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from tests.conftest import AS_OF, ProjectFactory


def _compile(make_project: ProjectFactory, files: dict[str, str], name: str = "s") -> None:
    project = Project.load(make_project(files))
    data = open_shop_data(project)
    catalog = SegmentCatalog.load(project.segments_dir)
    compile_segment(catalog, name, data, AS_OF)


# (id, file text, line, key or None, words the message must contain)
ERRORS: list[tuple[str, str, int, str | None, list[str]]] = [
    (
        "unknown-attribute",
        "description: d\nwhere:\n  all:\n    - orders_cnt: {at_least: 2}\n",
        4,
        "where.all[0].orders_cnt",
        ["unknown attribute 'orders_cnt'", "did you mean 'orders_count'", "attributes: "],
    ),
    (
        "type-mismatch",
        "description: d\nwhere:\n  locale: {at_least: 2}\n",
        3,
        "where.locale.at_least",
        ["'at_least' does not apply to 'locale'", "text", "tests for text: contains"],
    ),
    (
        "type-mismatch-bare-scalar",
        "description: d\nwhere:\n  accepts_marketing: maybe\n",
        3,
        "where.accepts_marketing",
        ["expected true or false, got 'maybe'"],
    ),
    (
        "type-mismatch-number",
        "description: d\nwhere:\n  orders_count:\n    at_least: many\n",
        4,
        "where.orders_count.at_least",
        ["expected a number, got 'many'"],
    ),
    (
        "type-mismatch-orders-count",
        "description: d\nwhere:\n  orders: {count: {contains: x}}\n",
        3,
        "where.orders.count.contains",
        ["'contains' does not apply to 'count', which is number"],
    ),
    (
        "percent-inside-orders",
        "description: d\nwhere:\n  orders: {where: {total: {top_percent: 5}}}\n",
        3,
        "where.orders.where.total.top_percent",
        ["'top_percent' ranks customers", "customer attributes only"],
    ),
    (
        "bad-relative-time",
        "description: d\nwhere:\n  last_order_at: {before: yesterday-ish}\n",
        3,
        "where.last_order_at.before",
        ["'yesterday-ish' is not a time", "N days|weeks|months|years ago"],
    ),
    (
        "bad-window",
        "description: d\nwhere:\n  last_order_at: {within: past 3 days}\n",
        3,
        "where.last_order_at.within",
        ["'past 3 days' is not a window", "last N days"],
    ),
    (
        "bad-orders-window",
        "description: d\nwhere:\n  all:\n    - orders_count: 1\n    - orders: {within: 3 days}\n",
        5,
        "where.all[1].orders.within",
        ["'3 days' is not a window", "last N days"],
    ),
    (
        "bad-operator",
        "description: d\nwhere:\n  orders_count: {atleast: 2}\n",
        3,
        "where.orders_count.atleast",
        ["unknown operator 'atleast'", "operators: equals"],
    ),
    (
        "unknown-segment",
        "description: d\nwhere:\n  segment: nope\n",
        3,
        "where.segment",
        ["unknown segment 'nope'", "segments: "],
    ),
    (
        "unknown-segment-did-you-mean",
        "description: d\nwhere:\n  any:\n    - segment: repeaterz\n",
        4,
        "where.any[0].segment",
        ["unknown segment 'repeaterz'", "did you mean 'repeaters'"],
    ),
    (
        "extra-key",
        "description: d\nwhere:\n  orders_count: 1\nowner: me\n",
        4,
        "owner",
        ["unknown key 'owner'", "allowed keys"],
    ),
    (
        "unknown-order-column",
        "description: d\nwhere:\n  orders: {where: {colour: red}}\n",
        3,
        "where.orders.where.colour",
        ["unknown attribute 'colour'", "attributes: category"],
    ),
    (
        "two-keys-in-a-condition",
        "description: d\nwhere:\n  all:\n    - {locale: en, role: couple}\n",
        4,
        "where.all[0]",
        ["exactly one key", "all: [...]"],
    ),
]
REPEATERS = {"segments/repeaters.yaml": "description: r\nwhere:\n  orders_count: {at_least: 2}\n"}


@pytest.mark.parametrize(
    ("text", "line", "key", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_names_file_line_and_key(
    make_project: ProjectFactory, text: str, line: int, key: str | None, words: list[str]
) -> None:
    with pytest.raises(SegmentError) as info:
        _compile(make_project, {"segments/s.yaml": text, **REPEATERS})
    error = info.value
    assert error.path is not None and error.path.name == "s.yaml"
    assert (error.line, error.key) == (line, key)
    rendered = error.render()
    assert f"s.yaml:{line}, key '{key}': " in rendered
    for word in words:
        assert word in rendered


def test_yaml_syntax_error_names_file_line_and_column(make_project: ProjectFactory) -> None:
    text = "description: d\nwhere:\n  all:\n    - orders_count: {at_least: 2\n  - role: x\n"
    with pytest.raises(SegmentError) as info:
        _compile(make_project, {"segments/s.yaml": text})
    error = info.value
    assert error.path is not None and error.path.name == "s.yaml"
    # the unclosed '{' runs on into line 5, where "  - role: x" has ':' in column 9
    assert error.line == 5
    assert "s.yaml:5: invalid YAML, column 9: expected ',' or '}'" in error.render()
    assert error.hint is not None and "indentation" in error.hint


def test_unknown_attribute_lists_the_attributes(make_project: ProjectFactory) -> None:
    with pytest.raises(SegmentError) as info:
        _compile(make_project, {"segments/s.yaml": "description: d\nwhere:\n  favourite: x\n"})
    assert info.value.key == "where.favourite"
    assert info.value.hint is not None
    listed = info.value.hint.removeprefix("attributes: ").split(", ")
    # the shop's own columns and every derived attribute
    assert {"locale", "vip_note", "orders_count", "rfm_segment", "historical_clv"} <= set(listed)


def test_reference_cycle_names_the_chain(make_project: ProjectFactory) -> None:
    files = {
        "segments/a.yaml": "description: a\nwhere:\n  segment: b\n",
        "segments/b.yaml": "description: b\nwhere:\n  all:\n    - orders_count: 1\n    - segment: a\n",
    }
    with pytest.raises(SegmentError) as info:
        _compile(make_project, files, "a")
    error = info.value
    assert "cycle: a → b → a" in str(error)
    assert error.path is not None and error.path.name == "b.yaml"
    assert (error.line, error.key) == (5, "where.all[1].segment")
    assert "b.yaml:5, key 'where.all[1].segment': segment reference cycle" in error.render()


def test_a_segment_referring_to_itself(make_project: ProjectFactory) -> None:
    files = {"segments/s.yaml": "description: s\nwhere:\n  not: {segment: s}\n"}
    with pytest.raises(SegmentError) as info:
        _compile(make_project, files)
    assert "cycle: s → s" in str(info.value)
    assert (info.value.line, info.value.key) == (3, "where.not.segment")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("description: d\nwhere:\n  orders_cnt: 2\n", "s.yaml:3, key 'where.orders_cnt'"),
        ("description: d\nwhere:\n  all:\n  - x: [1\n", "s.yaml:5: invalid YAML, column"),
        ("description: d\nwhere:\n  segment: s\n", "s.yaml:3, key 'where.segment'"),
    ],
    ids=["unknown-attribute", "yaml-syntax", "cycle"],
)
@pytest.mark.parametrize("command", ["members", "show", "sql", "list"])
def test_cli_prints_the_error_and_exits_3(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    text: str,
    where: str,
    command: str,
) -> None:
    root = make_project({"segments/s.yaml": text})
    args = ["segments", command, *([] if command == "list" else ["s"]), "--project", str(root)]
    assert main(args) == 3
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert where in output
    assert "Traceback" not in output
