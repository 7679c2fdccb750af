"""``records`` and ``MemberRows``: a member frame's rows as the dicts templates and the
ledger read, with the values ``DataFrame.to_dict`` gives, but None where a nullable column
holds NA or a timestamp is missing, and ``datetime`` for a naive ``Timestamp``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from clvflow.data.sources import open_shop_data
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import MemberRows, member_frame, records
from tests.conftest import AS_OF, ProjectFactory


def _plain(value: Any) -> Any:
    """What ``records`` promises instead of ``to_dict``'s value: None for NA and for a
    missing timestamp, ``datetime`` for a naive ``Timestamp``."""
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp) and value.tzinfo is None:
        return value.to_pydatetime()
    return value


def _expected(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _same(a: Any, b: Any) -> bool:
    if a is b:  # None, NaT
        return True
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


def _assert_rows_match(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for row, expected in zip(got, want, strict=True):
        assert list(row) == list(expected)
        for name, value in expected.items():
            assert _same(row[name], value), (name, row[name], value)


def test_every_kind_of_column_with_missing_values() -> None:
    frame = pd.DataFrame(
        {
            "text": pd.Series(["a", None, "c"], dtype="str"),
            "mixed": pd.Series(["a", None, 3], dtype=object),
            "flag": [True, False, True],
            "nullable_flag": pd.Series([True, None, False], dtype="boolean"),
            "count": [1, 2, 3],
            "nullable_count": pd.Series([1, None, 3], dtype="Int64"),
            "score": pd.Series([4, None, 5], dtype="Int32"),
            "amount": [1.5, np.nan, 2.0],
            "nullable_amount": pd.Series([1.5, None, 2.0], dtype="Float64"),
            "at": pd.to_datetime(["2024-01-01", None, "2024-02-01"]).astype("datetime64[us]"),
            "at_utc": pd.to_datetime(["2024-01-01", None, "2024-02-01"]).tz_localize("UTC"),
            "arrow_int": pd.Series([1, None, 3], dtype="int64[pyarrow]"),
            "arrow_text": pd.Series(["x", None, "z"], dtype="string[pyarrow]"),
            "category": pd.Series(["a", None, "a"], dtype="category"),
        }
    )
    got = records(frame)
    _assert_rows_match(got, _expected(frame))
    assert got[1]["nullable_count"] is None and got[1]["arrow_text"] is None
    assert type(got[0]["at"]) is dt.datetime and isinstance(got[0]["count"], int)
    assert got[1]["at"] is None and got[1]["at_utc"] is None
    assert isinstance(got[0]["at_utc"], pd.Timestamp)


def test_member_frame_rows_match_to_dict(make_project: ProjectFactory) -> None:
    root = make_project(
        {"segments/s.yaml": "description: d\nwhere:\n  customer_id: {is_set: true}\n"}
    )
    project = Project.load(root)
    data = open_shop_data(project)
    catalog = SegmentCatalog.load(project.segments_dir)
    frame = member_frame(data, compile_segment(catalog, "s", data, AS_OF), AS_OF)
    assert frame.isna().to_numpy().any()  # customers without orders: missing derived values
    _assert_rows_match(records(frame), _expected(frame))


def test_empty_frame_gives_no_rows() -> None:
    assert records(pd.DataFrame({"a": pd.Series([], dtype="Int64")})) == []


def test_rows_at_positions_come_in_that_order() -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "n": pd.Series([1, None, 3, 4], dtype="Int64"),
            "at": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01"]),
        }
    )
    rows = MemberRows(frame)
    assert len(rows) == 4
    picked = rows.rows([3, 1, 0])
    assert [r["id"] for r in picked] == ["d", "b", "a"]
    assert picked[1] == {"id": "b", "n": None, "at": None}
    assert picked[0]["at"] == dt.datetime(2024, 4, 1)
    assert rows.rows([]) == []
