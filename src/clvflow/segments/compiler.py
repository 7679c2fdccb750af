"""Compile a segment's condition tree to one SQL predicate over ``customer_facts AS cf``.

Every leaf test is wrapped in ``COALESCE(..., FALSE)``: a test on a missing value is false,
so ``not:`` is the exact set complement. Literals are rendered by this module (never
interpolated from user text without quoting), so the printed SQL runs as it is.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
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
    population: str = "customer_facts"

    def literal(self, value: Any, kind: Kind, loc: Loc) -> str:
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CompileError(f"expected a number, got {value!r}", loc)
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
            return resolve_time(value, self.as_of)
        except TimeExpressionError as exc:
            raise CompileError(str(exc), loc) from None

    def compile(self, column: Column, test: Test, loc: Loc, name: str) -> str:
        allowed = _ops_for(column.kind)
        parts: list[str] = []
        for op, operand in test.used():
            here = (*loc, op)
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
            values = ", ".join(lit(v) for v in operand) or "NULL"
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
            if not x.startswith("cf."):
                raise CompileError(f"'{op}' applies only to customer attributes", loc)
            bare = x.split(".", 1)[1]
            return (
                f"{x} {cmp} (SELECT {agg}(v) FROM (SELECT {bare} AS v, "
                f"ROW_NUMBER() OVER (ORDER BY {bare} {order}) AS rn, COUNT(*) OVER () AS n "
                f"FROM {self.population} WHERE {bare} IS NOT NULL) AS ranked "
                f"WHERE rn <= CEIL(n * {float(operand)!r} / 100.0))"
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
            return self.tests.compile(column, cond.test, cond.loc, cond.attribute)
        raise CompileError(
            "inside orders.where only tests on order, item and product columns are allowed",
            cond.loc,
        )

    def _orders(self, cond: OrdersCondition) -> str:
        filters = [
            "o.customer_id = cf.customer_id",
            f"o.placed_at <= {sql_timestamp(self.tests.as_of)}",
        ]
        if cond.within is not None:
            try:
                window = resolve_window(cond.within, self.tests.as_of)
            except TimeExpressionError as exc:
                raise CompileError(str(exc), (*cond.loc, "within")) from None
            filters.append(
                f"o.placed_at BETWEEN {sql_timestamp(window.start)} AND {sql_timestamp(window.end)}"
            )
        if cond.where is not None:
            self._order_tables.clear()
            predicate = self._order_condition(cond.where)
            if self._order_tables & {"i", "p"}:
                if not self.has_items:
                    raise CompileError(
                        "this tests item or product columns but the shop has no order_items data",
                        (*cond.loc, "where"),
                        hint="list order_items (and products) under data: in clvflow.yaml",
                    )
                predicate = (
                    "EXISTS (SELECT 1 FROM order_items AS i LEFT JOIN products AS p "
                    f"ON p.product_id = i.product_id WHERE i.order_id = o.order_id AND {predicate})"
                )
            filters.append(predicate)
        matched = "FROM orders AS o WHERE " + " AND ".join(filters)
        if cond.count is None and cond.total is None:
            return f"EXISTS (SELECT 1 {matched})"
        parts: list[str] = []
        if cond.count is not None:
            expr = Column(f"(SELECT COUNT(*) {matched})", "number")
            parts.append(self.tests.compile(expr, cond.count, (*cond.loc, "count"), "count"))
        if cond.total is not None:
            expr = Column(f"COALESCE((SELECT SUM(o.total) {matched}), 0)", "number")
            parts.append(self.tests.compile(expr, cond.total, (*cond.loc, "total"), "total"))
        return "(" + " AND ".join(parts) + ")"
