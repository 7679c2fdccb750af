"""The segment condition language: a typed tree parsed from YAML, with the location of
every node so that errors can name the line and key.

A condition is one of ``all: [..]``, ``any: [..]``, ``not: <condition>``,
``segment: <name>``, ``orders: {where, within, count, total}`` or ``<attribute>: <test>``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any as AnyType

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from clvflow.project.yamlfile import Loc, dotted

Scalar = str | int | float | bool | dt.date | dt.datetime

OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "at_least",
    "at_most",
    "greater_than",
    "less_than",
    "between",
    "is_set",
    "contains",
    "starts_with",
    "ends_with",
    "before",
    "after",
    "within",
    "top_percent",
    "bottom_percent",
)


class Test(BaseModel):
    """One attribute test; several keys are ANDed, a bare scalar means ``equals``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    # written as a bare scalar (``orders_count: 1``): errors then point at the attribute
    _bare: bool = PrivateAttr(default=False)

    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    at_least: Scalar | None = None
    at_most: Scalar | None = None
    greater_than: Scalar | None = None
    less_than: Scalar | None = None
    between: tuple[Scalar, Scalar] | None = Field(
        default=None, description="[low, high]: low inclusive, high exclusive"
    )
    is_set: bool | None = None
    contains: str | None = None
    starts_with: str | None = None
    ends_with: str | None = None
    before: Scalar | None = None
    after: Scalar | None = None
    within: str | None = Field(default=None, description="'last N days' or 'next N days' etc.")
    top_percent: float | None = Field(default=None, gt=0, le=100)
    bottom_percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _not_empty(self) -> Test:
        if not self.used():
            raise ValueError("a test needs at least one operator: " + ", ".join(OPERATORS))
        return self

    @property
    def bare(self) -> bool:
        return self._bare

    def used(self) -> list[tuple[str, AnyType]]:
        """The operators this test sets, in declaration order, with their operands."""
        out: list[tuple[str, AnyType]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                out.append(("in" if name == "in_" else name, value))
        return out


@dataclass(frozen=True)
class Node:
    loc: Loc


@dataclass(frozen=True)
class AllOf(Node):
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf(Node):
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Condition


@dataclass(frozen=True)
class SegmentRef(Node):
    name: str


@dataclass(frozen=True)
class AttributeTest(Node):
    attribute: str
    test: Test


@dataclass(frozen=True)
class OrdersCondition(Node):
    where: Condition | None
    within: str | None
    count: Test | None
    total: Test | None


Condition = AllOf | AnyOf | Not | SegmentRef | AttributeTest | OrdersCondition

ORDERS_KEYS = ("where", "within", "count", "total")


class ConditionSyntaxError(ValueError):
    """A malformed condition; ``loc`` points at the offending key."""

    def __init__(self, message: str, loc: Loc, hint: str | None = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.hint = hint


def parse_condition(raw: object, loc: Loc) -> Condition:
    """Parse one condition from YAML data found at ``loc``."""
    if not isinstance(raw, dict) or len(raw) != 1:
        got = f"a mapping with {len(raw)} keys" if isinstance(raw, dict) else type(raw).__name__
        raise ConditionSyntaxError(
            f"a condition must be a mapping with exactly one key, got {got}",
            loc,
            hint="combine several conditions with 'all: [...]' or 'any: [...]'",
        )
    ((key, value),) = raw.items()
    here = (*loc, key)
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise ConditionSyntaxError(f"'{key}' needs a non-empty list of conditions", here)
        items = tuple(parse_condition(v, (*here, i)) for i, v in enumerate(value))
        return AllOf(here, items) if key == "all" else AnyOf(here, items)
    if key == "not":
        return Not(here, parse_condition(value, here))
    if key == "segment":
        if not isinstance(value, str) or not value:
            raise ConditionSyntaxError("'segment' needs the name of another segment", here)
        return SegmentRef(here, value)
    if key == "orders":
        return _parse_orders(value, here)
    return AttributeTest(here, key, parse_test(value, here))


def parse_test(raw: object, loc: Loc) -> Test:
    """A mapping of operators, or a bare scalar meaning ``equals``."""
    payload = raw if isinstance(raw, dict) else {"equals": raw}
    if isinstance(raw, list):
        raise ConditionSyntaxError(
            "a list needs an operator", loc, hint="write {in: [..]} to test membership"
        )
    try:
        test = Test.model_validate(payload)
        test._bare = not isinstance(raw, dict)
        return test
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        sub = tuple(p for p in err["loc"] if isinstance(p, str | int))
        if err["type"] == "extra_forbidden":
            raise ConditionSyntaxError(
                f"unknown operator '{sub[-1]}'",
                (*loc, *sub),
                hint="operators: " + ", ".join(OPERATORS),
            ) from None
        raise ConditionSyntaxError(str(err["msg"]), (*loc, *sub[:1])) from None


def _parse_orders(raw: object, loc: Loc) -> OrdersCondition:
    if not isinstance(raw, dict):
        raise ConditionSyntaxError("'orders' needs a mapping of " + ", ".join(ORDERS_KEYS), loc)
    for key in raw:
        if key not in ORDERS_KEYS:
            raise ConditionSyntaxError(
                f"unknown key '{key}' under orders",
                (*loc, key),
                hint="use " + ", ".join(ORDERS_KEYS),
            )
    where = parse_condition(raw["where"], (*loc, "where")) if "where" in raw else None
    within = raw.get("within")
    if within is not None and not isinstance(within, str):
        raise ConditionSyntaxError("'within' needs text such as 'last 30 days'", (*loc, "within"))
    count = parse_test(raw["count"], (*loc, "count")) if "count" in raw else None
    total = parse_test(raw["total"], (*loc, "total")) if "total" in raw else None
    return OrdersCondition(loc, where, within, count, total)


def describe_loc(loc: Loc) -> str:
    return dotted(loc)
