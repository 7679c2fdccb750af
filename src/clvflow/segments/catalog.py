"""Load ``segments/*.yaml`` and compile each segment to one SQL query.

The file stem is the segment's name. References (``segment: other``) are inlined, so a
segment that refers to others is still one query; a cycle is an error naming the chain.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from clvflow.data.sources import ShopData
from clvflow.errors import SegmentError
from clvflow.project.yamlfile import Loc, YamlDocument, dotted, read_yaml, validate_document
from clvflow.segments.attributes import customer_scope, order_scope
from clvflow.segments.compiler import CompileError, ConditionCompiler, TestCompiler
from clvflow.segments.conditions import Condition, ConditionSyntaxError, parse_condition
from clvflow.segments.facts import Needs, facts_sql


class SegmentFile(BaseModel):
    """The top level of a segment file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1, description="What the segment is, for people.")
    where: dict[str, object] = Field(description="The condition customers must meet.")
    tags: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    name: str
    path: Path
    description: str
    condition: Condition
    doc: YamlDocument

    def error(self, message: str, loc: Loc, hint: str | None = None) -> SegmentError:
        return SegmentError(
            message, path=self.path, line=self.doc.line_of(loc), key=dotted(loc), hint=hint
        )


def load_segment(path: Path) -> Segment:
    doc = read_yaml(path, SegmentError)
    if not isinstance(doc.data, dict):
        raise SegmentError(
            "a segment file must be a mapping with 'description' and 'where'", path=path, line=1
        )
    model = validate_document(doc, SegmentFile, SegmentError)
    segment_name = path.stem
    try:
        condition = parse_condition(model.where, ("where",))
    except ConditionSyntaxError as exc:
        raise SegmentError(
            str(exc), path=path, line=doc.line_of(exc.loc), key=dotted(exc.loc), hint=exc.hint
        ) from None
    return Segment(segment_name, path, model.description, condition, doc)


class SegmentCatalog:
    """Every segment of a project, loaded and parsed (not yet compiled)."""

    def __init__(self, segments: dict[str, Segment]) -> None:
        self.segments = segments

    @classmethod
    def load(cls, directory: Path) -> SegmentCatalog:
        if not directory.is_dir():
            raise SegmentError("the segments folder does not exist", path=directory)
        found = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
        return cls({p.stem: load_segment(p) for p in found})

    def names(self) -> list[str]:
        return sorted(self.segments)

    def get(self, name: str) -> Segment:
        if name not in self.segments:
            close = difflib.get_close_matches(name, self.names(), n=1)
            mean = f" — did you mean '{close[0]}'?" if close else ""
            raise SegmentError(
                f"no segment named '{name}'{mean}",
                hint="segments: " + (", ".join(self.names()) or "(none)"),
            )
        return self.segments[name]


@dataclass(frozen=True)
class CompiledSegment:
    """A segment's predicate over ``customer_facts AS cf`` and what it needs there."""

    name: str
    predicate: str
    needs: Needs
    data: ShopData

    @property
    def facts(self) -> str:
        """The CTEs defining ``customer_facts`` with just what ``predicate`` reads."""
        return facts_sql(self.needs)

    def members_sql(self, columns: str = "cf.customer_id", join: str = "") -> str:
        """One self-contained query returning ``columns`` of the members, in a stable order
        (``join``: more relations joined to ``cf``)."""
        return (
            f"{self.data.with_clause(self.facts)}SELECT {columns}\nFROM customer_facts AS cf\n"
            f"{join}WHERE {self.predicate}\nORDER BY cf.customer_id"
        )


def new_needs(data: ShopData, as_of: dt.datetime) -> Needs:
    """An empty record of needs, for compiling segments that will share their facts."""

    def predictions(strict: bool) -> str:
        from clvflow.predictions.relation import predictions_relation

        return predictions_relation(data, as_of, strict=strict)

    return Needs(as_of=as_of, customer_columns=data.columns["customers"], predictions=predictions)


def compile_segment(
    catalog: SegmentCatalog,
    name: str,
    data: ShopData,
    as_of: dt.datetime,
    needs: Needs | None = None,
    *,
    unknown_item_tests: bool = False,
) -> CompiledSegment:
    """Compile segment ``name`` (and what it refers to) against the shop's columns.

    ``needs``, when given, is shared with other segments compiled for the same
    ``(data, as_of)``: their ``orders:`` tests then share columns, and one
    ``customer_facts`` serves them all. By default the segment gets its own.
    ``unknown_item_tests`` renders the ``orders:`` tests on item or product columns as
    NULL: where the predicate is then still TRUE or FALSE, those tests cannot change it
    (SQL's three-valued logic), so they need computing only where it is NULL.
    """
    needs = needs if needs is not None else new_needs(data, as_of)
    if needs.as_of != as_of:
        raise ValueError("segments sharing needs must be compiled for the same as_of")
    tests = TestCompiler(as_of=as_of, timezone=data.timezone)
    stack: list[str] = []

    def resolve(ref: str, loc: Loc) -> str:
        owner = catalog.segments[stack[-1]]
        if ref not in catalog.segments:
            close = difflib.get_close_matches(ref, catalog.names(), n=1)
            mean = f" — did you mean '{close[0]}'?" if close else ""
            raise owner.error(
                f"unknown segment '{ref}'{mean}",
                loc,
                hint="segments: " + ", ".join(catalog.names()),
            )
        if ref in stack:
            chain = " → ".join([*stack[stack.index(ref) :], ref])
            raise owner.error(f"segment reference cycle: {chain}", loc)
        return compile_one(ref)

    compiler = ConditionCompiler(
        customer=customer_scope(data.columns["customers"]),
        orders=order_scope(
            data.columns["orders"],
            data.columns.get("order_items"),
            data.columns.get("products"),
        ),
        has_items=data.has("order_items"),
        tests=tests,
        resolve_segment=resolve,
        needs=needs,
        unknown_item_tests=unknown_item_tests,
    )

    def compile_one(segment_name: str) -> str:
        segment = catalog.get(segment_name)
        stack.append(segment_name)
        try:
            return compiler.compile(segment.condition)
        except CompileError as exc:
            raise segment.error(str(exc), exc.loc, exc.hint) from None
        finally:
            stack.pop()

    predicate = compile_one(name)
    return CompiledSegment(name, predicate, needs, data)
