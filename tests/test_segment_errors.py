"""Segment mistakes become errors that name the file, the line and the key."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "description: d\nwhere:\n  all:\n    - orders_cnt: {at_least: 2}\n",
            4,
            ["unknown attribute 'orders_cnt'", "did you mean 'orders_count'"],
        ),
        (
            "description: d\nwhere:\n  locale: {at_least: 2}\n",
            3,
            ["'at_least' does not apply to 'locale'", "text"],
        ),
        ("description: d\nwhere:\n  last_order_at: {before: yesterday-ish}\n", 3, ["not a time"]),
        (
            "description: d\nwhere:\n  last_order_at: {within: past 3 days}\n",
            3,
            ["not a window", "last N days"],
        ),
        (
            "description: d\nwhere:\n  orders_count: {atleast: 2}\n",
            3,
            ["unknown operator 'atleast'"],
        ),
        ("description: d\nwhere:\n  segment: nope\n", 3, ["unknown segment 'nope'"]),
        ("description: d\nwhere:\n  all:\n  - orders_count: [1\n", 5, ["invalid YAML", "column"]),
        (
            "description: d\nwhere:\n  orders_count: 1\nowner: me\n",
            4,
            ["unknown key 'owner'", "allowed keys"],
        ),
        (
            "description: d\nwhere:\n  orders: {where: {colour: red}}\n",
            3,
            ["unknown attribute 'colour'"],
        ),
    ],
    ids=[
        "unknown-attribute",
        "type-mismatch",
        "bad-time",
        "bad-window",
        "bad-operator",
        "unknown-ref",
        "yaml-syntax",
        "extra-key",
        "unknown-order-column",
    ],
)
def test_error_names_file_line_and_key(
    make_project: ProjectFactory, text: str, line: int, words: list[str]
) -> None:
    with pytest.raises(SegmentError) as info:
        _compile(make_project, {"segments/s.yaml": text})
    error = info.value
    assert error.path is not None and error.path.name == "s.yaml"
    assert error.line == line
    rendered = error.render()
    assert f"s.yaml:{line}" in rendered
    for word in words:
        assert word in rendered


def test_unknown_attribute_lists_the_attributes(make_project: ProjectFactory) -> None:
    with pytest.raises(SegmentError) as info:
        _compile(make_project, {"segments/s.yaml": "description: d\nwhere:\n  favourite: x\n"})
    assert info.value.key == "where.favourite"
    assert info.value.hint is not None and "orders_count" in info.value.hint


def test_reference_cycle_names_the_chain(make_project: ProjectFactory) -> None:
    files = {
        "segments/a.yaml": "description: a\nwhere:\n  segment: b\n",
        "segments/b.yaml": "description: b\nwhere:\n  all:\n    - orders_count: 1\n    - segment: a\n",
    }
    with pytest.raises(SegmentError) as info:
        _compile(make_project, files, "a")
    assert "cycle: a → b → a" in str(info.value)
    assert info.value.path is not None and info.value.path.name == "b.yaml"
    assert info.value.line == 5
