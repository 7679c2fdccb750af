"""The shop as of one instant, for the console's pages.

Every customer with every attribute (the columns :func:`clvflow.segments.members.
customer_rows` gives, derived and predicted ones included) and their latest order id is
computed once into a table of the in-process DuckDB; with a database the same relation is
a common table expression each query recomputes (nothing is written to the shop's
database). The segments' predicates run over it: all counts in one pass (kept), a page of
members, one customer's memberships, each in one query; one at a time (``lock``).

The composer that renders previews and dry runs works on a connection of its own
(``render_lock``): its per-run tables (every customer's latest order and recommendations)
take a while on a large shop and must not hold up the other pages. It is made once; a
changed template file gives it the templates anew.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from clvflow.compliance.secret import signing_key
from clvflow.data.sources import ShopData, in_list, open_shop_data, quote_ident, quote_literal
from clvflow.project.layout import Project
from clvflow.rendering.composer import Composer
from clvflow.rendering.templates import TemplateLibrary
from clvflow.segments.attributes import sql_timestamp
from clvflow.segments.facts import Needs, facts_sql
from clvflow.segments.members import attribute_names, records
from clvflow.web.console.fingerprint import templates_fingerprint
from clvflow.web.console.segment_set import (
    SegmentEntry,
    compile_alone,
    compile_shared,
    load_entries,
)

if TYPE_CHECKING:
    import pandas as pd

_TABLES = itertools.count(1)
FACTS = "console_facts"


def last_orders_cte(as_of: dt.datetime) -> str:
    """Each customer's latest order at or before ``as_of`` (ties: the greatest order id)."""
    return (
        "last_orders AS (\n"
        "    SELECT customer_id, order_id AS last_order_id FROM (\n"
        "      SELECT customer_id, order_id, ROW_NUMBER() OVER (\n"
        "        PARTITION BY customer_id ORDER BY placed_at DESC, order_id DESC) AS rn\n"
        f"      FROM orders WHERE placed_at <= {sql_timestamp(as_of)}\n"
        "    ) AS ranked WHERE rn = 1\n"
        "  )"
    )


class Snapshot:
    def __init__(self, project: Project, as_of: dt.datetime) -> None:
        self.project = project
        self.as_of = as_of
        self.lock = threading.RLock()
        self.render_lock = threading.RLock()
        self.closed = False
        self.data = open_shop_data(project)
        try:
            self.catalog, self.segments = load_entries(project.segments_dir)
            compile_alone(self.catalog, self.segments, self.data, as_of)
            needs = compile_shared(self.catalog, self.segments, self.data, as_of)
            self.prefix, self.relation = self._materialize(needs)
        except BaseException:
            self.data.close()
            raise
        self.columns = [*attribute_names(self.data), "last_order_id"]
        self._counts: dict[str, int] | None = None
        self._composer: tuple[str, TemplateLibrary, Composer] | None = None
        self._render_data: ShopData | None = None

    def _materialize(self, needs: Needs) -> tuple[str, str]:
        """(the WITH clause queries start with, the facts relation's name)."""
        ctes = (facts_sql(needs, full=True), last_orders_cte(self.as_of))
        body = (
            "SELECT cf.*, lo.last_order_id FROM customer_facts AS cf "
            "LEFT JOIN last_orders AS lo ON lo.customer_id = cf.customer_id"
        )
        if self.data.con is None:
            return self.data.with_clause(*ctes, f"{FACTS} AS ({body})"), FACTS
        table = quote_ident(f"clvflow_{FACTS}_{next(_TABLES)}")
        self.data.con.execute(f"CREATE TEMP TABLE {table} AS {self.data.with_clause(*ctes)}{body}")
        # predicates read ``customer_facts`` by name (``top_percent`` ranks over it)
        return f"WITH customer_facts AS NOT MATERIALIZED (SELECT * FROM {table})\n", (
            "customer_facts"
        )

    def _select(self, columns: Sequence[str], where: str, tail: str = "") -> pd.DataFrame:
        listed = ", ".join(f"cf.{quote_ident(c)}" for c in columns)
        sql = f"{self.prefix}SELECT {listed} FROM {self.relation} AS cf WHERE {where}{tail}"
        with self.lock:
            return self.data.frame(sql)

    def entry(self, name: str) -> SegmentEntry | None:
        return self.segments.get(name)

    def counts(self) -> dict[str, int]:
        """Members of every segment that compiles, counted in one pass (and kept)."""
        with self.lock:
            if self._counts is None:
                valid = [(n, e.predicate) for n, e in self.segments.items() if e.predicate]
                row: Sequence[Any] = ()
                if valid:
                    counted = ", ".join(f"COUNT(*) FILTER (WHERE {p})" for _, p in valid)
                    (row,) = self.data.rows(
                        f"{self.prefix}SELECT {counted} FROM {self.relation} AS cf"
                    )
                self._counts = {n: int(v) for (n, _), v in zip(valid, row, strict=True)}
            return self._counts

    def members(
        self, name: str, columns: Sequence[str], limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of a segment's members (by customer id) with ``columns``."""
        predicate = self.segments[name].predicate
        tail = f"\nORDER BY cf.customer_id LIMIT {int(limit)} OFFSET {int(offset)}"
        return records(self._select(columns, predicate, tail))

    def member_frame(self, name: str) -> pd.DataFrame:
        """What :func:`clvflow.segments.members.member_frame` gives for the segment."""
        predicate = self.segments[name].predicate
        return self._select(self.columns, predicate, "\nORDER BY cf.customer_id")

    def customers(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """What :func:`clvflow.segments.members.customer_rows` gives (plus
        ``last_order_id``), in the order of ``ids``."""
        if not ids:
            return []
        frame = self._select(self.columns, f"cf.customer_id IN {in_list(list(ids))}")
        by_id = {str(r["customer_id"]): r for r in records(frame)}
        return [by_id[i] for i in ids if i in by_id]

    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Customers whose id is ``text`` or whose email starts with it (any case)."""
        wanted = text.strip().lower()
        if not wanted:
            return []
        literal = quote_literal(wanted)
        where = (
            f"LOWER(cf.customer_id) = {literal} OR LEFT(LOWER(cf.email), {len(wanted)}) = {literal}"
        )
        tail = f"\nORDER BY cf.customer_id LIMIT {int(limit)}"
        return records(self._select(["customer_id", "email", "first_name"], where, tail))

    def memberships(self, customer_id: str) -> dict[str, bool]:
        """Whether the customer is in each segment that compiles."""
        valid = [(n, e.predicate) for n, e in self.segments.items() if e.predicate]
        if not valid:
            return {}
        tests = ", ".join(f"({p}) AS {quote_ident(n)}" for n, p in valid)
        sql = (
            f"{self.prefix}SELECT {tests} FROM {self.relation} AS cf "
            f"WHERE cf.customer_id = {quote_literal(customer_id)}"
        )
        with self.lock:
            rows = self.data.rows(sql)
        if not rows:
            return {}
        return {n: bool(v) for (n, _), v in zip(valid, rows[0], strict=True)}

    @contextmanager
    def rendering(self) -> Iterator[tuple[TemplateLibrary, Composer]]:
        """The templates as they are now and the composer (a run's, on its own connection
        to the data), for one rendering at a time."""
        with self.render_lock:
            try:
                yield self._composer_now()
            finally:
                if self.closed:  # closed meanwhile: its rendering side is closed here
                    self._close_rendering()

    def _composer_now(self) -> tuple[TemplateLibrary, Composer]:
        current = templates_fingerprint(self.project)
        if self._composer is None:
            cfg = self.project.config
            library = TemplateLibrary.for_project(self.project)
            key = signing_key(self.project.state_dir, allow_local=True)
            self._render_data = open_shop_data(self.project)
            composer = Composer(cfg.shop, self._render_data, library, key, self.as_of)
            self._composer = (current, library, composer)
        elif self._composer[0] != current:
            library = TemplateLibrary.for_project(self.project)
            self._composer[2].templates = library
            self._composer = (current, library, self._composer[2])
        return self._composer[1], self._composer[2]

    def prepare_rendering(self) -> None:
        """Compute the composer's per-run tables now rather than on the first preview."""
        with self.rendering() as (_, composer):
            if not self.closed:
                composer.prepare_tables()

    def _close_rendering(self) -> None:
        if self._render_data is not None:
            self._render_data.close()
            self._render_data = None

    def close(self) -> None:
        """Close the data; the rendering side now, or when the rendering under way ends."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.data.close()
        if self.render_lock.acquire(blocking=False):
            try:
                self._close_rendering()
            finally:
                self.render_lock.release()
