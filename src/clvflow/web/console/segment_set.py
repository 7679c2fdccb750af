"""Every segment file of the project as the console shows it: loaded one by one (a broken
file is an entry with its error, worded as ``clvflow validate`` words it), compiled twice —
alone, for the SQL ``clvflow segments sql`` prints and the attributes it reads, and with the
others over one shared facts relation, for counting and listing members."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from clvflow.data.sources import ShopData
from clvflow.errors import ClvflowError
from clvflow.segments.attributes import PREDICTED
from clvflow.segments.catalog import (
    Segment,
    SegmentCatalog,
    compile_segment,
    load_segment,
    new_needs,
)
from clvflow.segments.facts import Needs

PREDICTED_NOTE = (
    "-- the predicted attributes are read from a temporary table of the run that\n"
    "-- holds every customer's predictions (`clvflow predict fit` shows the models)\n"
)


@dataclass
class SegmentEntry:
    name: str
    path: Path
    description: str = ""
    error: str | None = None  # ClvflowError.render(): file, line, key, message, hint
    reads: tuple[str, ...] = ()  # the customer attributes its conditions read
    sql: str = ""  # the query `clvflow segments sql NAME` prints
    predicate: str = ""  # over the shared facts (``cf``)
    predicted: bool = False  # reads a predicted attribute


def segment_files(directory: Path) -> list[Path]:
    """The segment files, in the order ``SegmentCatalog.load`` reads them."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))


def load_entries(directory: Path) -> tuple[SegmentCatalog, dict[str, SegmentEntry]]:
    """The catalog of the files that load, and an entry for every file."""
    entries: dict[str, SegmentEntry] = {}
    loaded: dict[str, Segment] = {}
    for path in segment_files(directory):
        try:
            segment = load_segment(path)
        except ClvflowError as exc:
            entries[path.stem] = SegmentEntry(path.stem, path, error=exc.render())
            continue
        loaded[segment.name] = segment
        entries[segment.name] = SegmentEntry(segment.name, path, segment.description)
    return SegmentCatalog(loaded), dict(sorted(entries.items()))


def compile_alone(
    catalog: SegmentCatalog, entries: dict[str, SegmentEntry], data: ShopData, as_of: dt.datetime
) -> None:
    """Each loaded segment's own query and the attributes it reads; a compile error is the
    entry's error."""
    for name, entry in entries.items():
        if entry.error is not None:
            continue
        try:
            compiled = compile_segment(catalog, name, data, as_of)
            entry.predicted = bool(compiled.needs.derived & set(PREDICTED))
            entry.sql = (PREDICTED_NOTE if entry.predicted else "") + compiled.members_sql()
        except ClvflowError as exc:
            entry.error = exc.render()
            continue
        needs = compiled.needs
        entry.reads = tuple(sorted(needs.columns - {"customer_id"})) + tuple(sorted(needs.derived))


def compile_shared(
    catalog: SegmentCatalog,
    entries: dict[str, SegmentEntry],
    data: ShopData,
    as_of: dt.datetime,
    leave_out: frozenset[str] = frozenset(),
) -> Needs:
    """Every valid segment (but ``leave_out``) compiled over one shared facts relation;
    each entry's ``predicate`` is set (empty for those left out)."""
    needs = new_needs(data, as_of)
    for name, entry in entries.items():
        entry.predicate = ""
        if entry.error is None and name not in leave_out:
            entry.predicate = compile_segment(catalog, name, data, as_of, needs).predicate
    return needs
