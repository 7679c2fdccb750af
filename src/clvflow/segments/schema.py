"""The JSON Schema of segment files, generated from the pydantic models, so editors can
autocomplete and check ``segments/*.yaml``. ``schemas/segment.schema.json`` in the
repository is this output; a test fails when it is stale (``clvflow segments schema``
prints it)."""

from __future__ import annotations

import json
from typing import Any

from clvflow.segments.catalog import SegmentFile
from clvflow.segments.conditions import ORDERS_KEYS, Test

KEYWORDS = ("all", "any", "not", "segment", "orders")


def _only(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


def segment_json_schema() -> dict[str, Any]:
    test = Test.model_json_schema(by_alias=True)
    scalar = {"type": ["string", "number", "integer", "boolean"]}
    test_or_scalar = {"anyOf": [{"$ref": "#/$defs/Test"}, scalar]}
    condition_ref = {"$ref": "#/$defs/Condition"}
    conditions = {"type": "array", "minItems": 1, "items": condition_ref}
    orders_properties: dict[str, Any] = {
        "where": condition_ref,
        "within": {"type": "string", "description": "'last N days|weeks|months|years'"},
        "count": test_or_scalar,
        "total": test_or_scalar,
    }
    assert set(orders_properties) == set(ORDERS_KEYS)
    orders = {
        "type": "object",
        "description": "The customer's orders matching where/within, tested by count/total.",
        "properties": orders_properties,
        "additionalProperties": False,
    }
    attribute = {
        "type": "object",
        "description": "<attribute>: <test> — a customer (or, under orders.where, order) column.",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"not": {"enum": list(KEYWORDS)}},
        "additionalProperties": test_or_scalar,
    }
    condition = {
        "anyOf": [
            _only("all", conditions),
            _only("any", conditions),
            _only("not", condition_ref),
            _only("segment", {"type": "string", "description": "Another segment's name."}),
            _only("orders", orders),
            attribute,
        ]
    }
    top = SegmentFile.model_json_schema()
    top["properties"]["where"] = {**condition_ref, "description": "Who is in the segment."}
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top["$defs"] = {"Test": test, "Condition": condition}
    return top


def segment_json_schema_text() -> str:
    return json.dumps(segment_json_schema(), indent=2, ensure_ascii=False) + "\n"
