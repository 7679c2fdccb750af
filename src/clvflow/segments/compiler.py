"""Compile a segment's condition tree to one SQL predicate over ``customer_facts AS cf``.

Every leaf test is wrapped in ``COALESCE(..., FALSE)``: a test on a missing value is false,
so ``not:`` is the exact set complement. Literals are rendered by this module (never
interpolated from user text without quoting), so the printed SQL runs as it is. Relative
times are resolved against ``as_of`` here, before any SQL exists.

The compiler records in ``Needs`` what the predicate reads (customer columns, derived
attributes, ``orders:`` selections); an ``orders:`` test becomes a test on a column of
``customer_facts`` that ``clvflow.segments.facts`` computes.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from clvflow.project.yamlfile import Loc
from clvflow.segments.attributes import Column, Kind, sql_date, sql_timestamp
from clvflow.segments.conditions import (
    AllOf,
    AnyOf,
    AttributeTest,
    Condition,
    Not,
    OrdersCondition,
    SegmentRef,
    Test,
)
from clvflow.segments.facts import Needs
from clvflow.segments.times import TimeExpressionError, resolve_time, resolve_window


class CompileError(ValueError):
    """A condition that does not fit the data; ``loc`` points at the key."""

    def __init__(self, message: str, loc: Loc, hint: str | None = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.hint = hint


def quote_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ops_for(kind: Kind) -> set[str]:
    common = {"equals", "not_equals", "in", "not_in", "is_set"}
    if kind == "number":
        return common | {
            "at_least", "at_most", "greater_than", "less_than", "between",
            "top_percent", "bottom_percent",
        }  # fmt: skip
    if kind in ("date", "timestamp"):
        return common | {
            "at_least", "at_most", "greater_than", "less_than", "between",
            "before", "after", "within",
        }  # fmt: skip
    if kind == "text":
        return common | {"contains", "starts_with", "ends_with"}
    return {"equals", "not_equals", "is_set"}


@dataclass
class TestCompiler:
    """Turns one ``Test`` on one column into SQL."""

    as_of: dt.datetime
    timezone: str | None = None
    population: str = "customer_facts"

    def literal(self, value: Any, kind: Kind, loc: Loc) -> str:
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CompileError(f"expected a number, got {value!r}", loc)
            if not math.isfinite(value):
                raise CompileError(f"expected a finite number, got {value!r}", loc)
            return repr(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise CompileError(f"expected true or false, got {value!r}", loc)
            return "TRUE" if value else "FALSE"
        if kind in ("date", "timestamp"):
            when = self.time(value, loc)
            return sql_date(when.date()) if kind == "date" else sql_timestamp(when)
        if isinstance(value, dt.date | dt.datetime):
            value = value.isoformat()
        return quote_text(str(value))

    def time(self, value: Any, loc: Loc) -> dt.datetime:
        try:
            return resolve_time(value, self.as_of, self.timezone)
        except TimeExpressionError as exc:
            raise CompileError(str(exc), loc) from None

    def compile(
        self, column: Column, test: Test, loc: Loc, name: str, *, ranked: bool = True
    ) -> str:
        """``test`` on ``column``; ``ranked``: whether top/bottom_percent may rank it among
        the customers (only for customer attributes)."""
        allowed = _ops_for(column.kind)
        if not ranked:
            allowed -= {"top_percent", "bottom_percent"}
        parts: list[str] = []
        for op, operand in test.used():
            here = loc if test.bare else (*loc, op)
            if op in ("top_percent", "bottom_percent") and not ranked:
                raise CompileError(
                    f"'{op}' ranks customers, so it applies to customer attributes only, "
                    f"not to '{name}'",
                    here,
                    hint="compare with at_least/at_most, or rank a customer attribute",
                )
            if op not in allowed:
                raise CompileError(
                    f"'{op}' does not apply to '{name}', which is {column.kind}",
                    here,
                    hint=f"tests for {column.kind}: {', '.join(sorted(allowed))}",
                )
            parts.append(self._one(column, op, operand, here))
        return "COALESCE(" + " AND ".join(parts) + ", FALSE)"

    def _one(self, col: Column, op: str, operand: Any, loc: Loc) -> str:
        x, kind = col.sql, col.kind
        lit: Callable[[Any], str] = lambda v: self.literal(v, kind, loc)  # noqa: E731
        simple = {
            "equals": "=",
            "not_equals": "<>",
            "at_least": ">=",
            "at_most": "<=",
            "greater_than": ">",
            "less_than": "<",
            "before": "<",
            "after": ">",
        }
        if op in simple:
            return f"{x} {simple[op]} {lit(operand)}"
        if op in ("in", "not_in"):
            if not operand:  # no value is in the empty list; every (present) value is not
                return "FALSE" if op == "in" else f"{x} IS NOT NULL"
            values = ", ".join(lit(v) for v in operand)
            return f"{x} {'IN' if op == 'in' else 'NOT IN'} ({values})"
        if op == "between":
            low, high = operand
            return f"({x} >= {lit(low)} AND {x} < {lit(high)})"
        if op == "is_set":
            return f"{x} IS {'NOT ' if operand else ''}NULL"
        if op in ("contains", "starts_with", "ends_with"):
            needle = quote_text(str(operand).lower())
            n = len(str(operand))
            if op == "contains":
                return f"STRPOS(LOWER({x}), {needle}) > 0"
            side = "LEFT" if op == "starts_with" else "RIGHT"
            return f"{side}(LOWER({x}), {n}) = {needle}"
        if op == "within":
            try:
                window = resolve_window(operand, self.as_of)
            except TimeExpressionError as exc:
                raise CompileError(str(exc), loc) from None
            if kind == "date":
                return (
                    f"{x} BETWEEN {sql_date(window.start.date())} AND {sql_date(window.end.date())}"
                )
            return f"{x} BETWEEN {sql_timestamp(window.start)} AND {sql_timestamp(window.end)}"
        if op in ("top_percent", "bottom_percent"):
            order = "DESC" if op == "top_percent" else "ASC"
            agg = "MIN" if op == "top_percent" else "MAX"
            cmp = ">=" if op == "top_percent" else "<="
            # the k-th value in that order among those present, k = ceil(N × P / 100),
            # in integer arithmetic on P as the exact decimal it was written as
            bare = x.split(".", 1)[1]
            share = Fraction(str(operand)) / 100
            num, den = share.numerator, share.denominator
            present = f"FROM {self.population} WHERE {bare} IS NOT NULL"
            k = f"CAST(FLOOR((COUNT(*) * {num} + {den - 1}) * 1.0 / {den}) AS BIGINT)"
            return (
                f"{x} {cmp} (SELECT {agg}(v) FROM (SELECT {bare} AS v {present} "
                f"ORDER BY {bare} {order} LIMIT (SELECT {k} {present})) AS ranked)"
            )
        raise CompileError(f"unknown operator '{op}'", loc)  # pragma: no cover


@dataclass
class ConditionCompiler:
    """Compiles a condition tree; ``resolve_segment`` inlines references by name."""

    customer: dict[str, Column]
    orders: dict[str, tuple[Column, str]]
    has_items: bool
    tests: TestCompiler
    resolve_segment: Callable[[str, Loc], str]
    needs: Needs
    unknown_item_tests: bool = False  # render orders: tests on items as NULL (unknown)
    _order_tables: set[str] = field(default_factory=set)

    def compile(self, cond: Condition) -> str:
        if isinstance(cond, AllOf):
            return "(" + " AND ".join(self.compile(c) for c in cond.items) + ")"
        if isinstance(cond, AnyOf):
            return "(" + " OR ".join(self.compile(c) for c in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(NOT {self.compile(cond.item)})"
        if isinstance(cond, SegmentRef):
            return self.resolve_segment(cond.name, cond.loc)
        if isinstance(cond, AttributeTest):
            column = self._lookup(cond.attribute, self.customer, cond.loc)
            self.needs.use(cond.attribute)
            return self.tests.compile(column, cond.test, cond.loc, cond.attribute)
        return self._orders(cond)

    def _lookup(self, name: str, scope: dict[str, Column], loc: Loc) -> Column:
        if name in scope:
            return scope[name]
        close = difflib.get_close_matches(name, list(scope), n=1)
        mean = f" — did you mean '{close[0]}'?" if close else ""
        raise CompileError(
            f"unknown attribute '{name}'{mean}",
            loc,
            hint="attributes: " + ", ".join(sorted(scope)),
        )

    def _order_condition(self, cond: Condition) -> str:
        if isinstance(cond, AllOf):
            return "(" + " AND ".join(self._order_condition(c) for c in cond.items) + ")"
        if isinstance(cond, AnyOf):
            return "(" + " OR ".join(self._order_condition(c) for c in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(NOT {self._order_condition(cond.item)})"
        if isinstance(cond, AttributeTest):
            flat = {name: col for name, (col, _) in self.orders.items()}
            column = self._lookup(cond.attribute, flat, cond.loc)
            self._order_tables.add(self.orders[cond.attribute][1])
            return self.tests.compile(column, cond.test, cond.loc, cond.attribute, ranked=False)
        raise CompileError(
            "inside orders.where only tests on order, item and product columns are allowed",
            cond.loc,
        )

    def _orders(self, cond: OrdersCondition) -> str:
        window = None
        if cond.within is not None:
            try:
                window = resolve_window(cond.within, self.tests.as_of)
            except TimeExpressionError as exc:
                raise CompileError(str(exc), (*cond.loc, "within")) from None
        where: str | None = None
        items = False
        if cond.where is not None:
            self._order_tables.clear()
            where = self._order_condition(cond.where)
            items = bool(self._order_tables & {"i", "p"})
            if items and not self.has_items:
                raise CompileError(
                    "this tests item or product columns but the shop has no order_items data",
                    (*cond.loc, "where"),
                    hint="list order_items (and products) under data: in clvflow.yaml",
                )
        fact = self.needs.orders_fact(where, window, items)
        if items and self.unknown_item_tests:
            return "CAST(NULL AS BOOLEAN)"
        if cond.count is None and cond.total is None:
            fact.any = True
            return f'cf."{fact.any_column}"'
        parts: list[str] = []
        if cond.count is not None:
            fact.count = True
            column = Column(f'cf."{fact.count_column}"', "number")
            loc = (*cond.loc, "count")
            parts.append(self.tests.compile(column, cond.count, loc, "count", ranked=False))
        if cond.total is not None:
            fact.total = True
            column = Column(f'cf."{fact.total_column}"', "number")
            loc = (*cond.loc, "total")
            parts.append(self.tests.compile(column, cond.total, loc, "total", ranked=False))
        return "(" + " AND ".join(parts) + ")"
