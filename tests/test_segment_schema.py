"""The published JSON Schema for segment files: current, and it accepts what clvflow accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from clvflow.segments.schema import segment_json_schema, segment_json_schema_text
from tests.conftest import ROOT

SCHEMA_FILE = ROOT / "schemas" / "segment.schema.json"


def test_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text() == segment_json_schema_text(), (
        "schemas/segment.schema.json is stale: run "
        "`.venv/bin/clvflow segments schema > schemas/segment.schema.json`"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "segments").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_segments_validate(path) -> None:  # type: ignore[no-untyped-def]
    jsonschema.Draft202012Validator(segment_json_schema()).validate(
        yaml.safe_load(path.read_text())
    )


@pytest.mark.parametrize(
    "document",
    [
        {"where": {"orders_count": 1}},
        {"description": "d", "where": {"orders_count": {"atleast": 2}}},
        {"description": "d", "where": {"all": []}},
        {"description": "d", "where": {"orders_count": 1, "locale": "en"}},
        {"description": "d", "where": {"orders": {"when": "last 3 days"}}},
        {"description": "d", "where": {"segment": "x"}, "owner": "me"},
    ],
    ids=["no-description", "bad-operator", "empty-all", "two-keys", "bad-orders-key", "extra-key"],
)
def test_schema_rejects_what_clvflow_rejects(document: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(segment_json_schema()).validate(
            json.loads(json.dumps(document))
        )
