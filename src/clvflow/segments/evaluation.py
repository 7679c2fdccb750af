"""Evaluate several segments over one shop as of one instant, sharing the work.

The segments are compiled with one ``Needs``, so their ``customer_facts`` is one relation
holding the union of what they read, and equal ``orders:`` tests are one column. With
files (DuckDB) that relation is built once into a temporary table, in two steps:

1. every customer with the columns and derived attributes the predicates read, from one
   pass over orders (which also counts the ``orders:`` tests on order columns);
2. the ``orders:`` tests on item or product columns, in one pass over orders × items ×
   products — only for the customers whose membership they can change: each predicate is
   evaluated with those tests as NULL, and where it is TRUE or FALSE regardless (SQL's
   three-valued logic), their value cannot matter. For "wedding soon and no invitations
   bought", that is the customers with a wedding soon. These rows go to a small table of
   their own, joined in only for the segments that use them.

Each segment is then its predicate over those tables; the members are exactly those of
``member_ids(data, compile_segment(...))``.

With a database (PostgreSQL), nothing is written there: each segment runs as its own
pushed-down query.
"""

from __future__ import annotations

import datetime as dt
import itertools
from types import TracebackType

from clvflow.data.sources import ShopData, quote_ident
from clvflow.segments.catalog import CompiledSegment, SegmentCatalog, compile_segment, new_needs
from clvflow.segments.facts import facts_sql, item_fact_columns, item_facts, item_facts_sql
from clvflow.segments.members import member_ids

_TABLES = itertools.count(1)


class SharedFacts:
    """Segments ``names`` compiled together; ``member_ids(name)`` evaluates one of them.

    The facts table is built on the first ``member_ids`` (or ``build``) and dropped by
    ``close`` (or at the end of a ``with`` block).
    """

    def __init__(
        self, catalog: SegmentCatalog, names: list[str], data: ShopData, as_of: dt.datetime
    ) -> None:
        self.data = data
        self.needs = new_needs(data, as_of)
        self.compiled: dict[str, CompiledSegment] = {
            name: compile_segment(catalog, name, data, as_of, self.needs) for name in names
        }
        # each predicate with its orders: tests on items unknown, where that changes it
        self.undecided: dict[str, str] = {}
        for name in names:
            masked = compile_segment(
                catalog, name, data, as_of, self.needs, unknown_item_tests=True
            ).predicate
            if masked != self.compiled[name].predicate:
                self.undecided[name] = masked
        self.table: str | None = None  # every customer, without the item-level tests
        self.item_table: str | None = None  # the item-level tests, for the candidates

    def __enter__(self) -> SharedFacts:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def build(self) -> None:
        """Compute the shared ``customer_facts`` (DuckDB only; a no-op for a database)."""
        con = self.data.con
        if con is None or self.table is not None:
            return
        table = self._temp("customer_facts")
        con.execute(
            f"CREATE TEMP TABLE {table} AS "
            f"{self.data.with_clause(facts_sql(self.needs, item_tests=False))}"
            "SELECT * FROM customer_facts"
        )
        self.table = table
        if not item_facts(self.needs):
            return
        candidates = self._temp("candidates")
        undecided = " OR ".join(f"({p}) IS NULL" for p in self.undecided.values()) or "FALSE"
        con.execute(
            f"CREATE TEMP TABLE {candidates} AS {self._over(name=None)}"
            f"SELECT cf.customer_id FROM customer_facts AS cf WHERE {undecided}"
        )
        # a small table (the candidates' rows), joined only where a predicate needs it
        items = self._temp("item_facts")
        ctes = item_facts_sql(self.needs, f"SELECT customer_id FROM {candidates}")
        con.execute(
            f"CREATE TEMP TABLE {items} AS {self.data.with_clause(*ctes)}SELECT * FROM item_facts"
        )
        con.execute(f"DROP TABLE {candidates}")
        self.item_table = items

    @staticmethod
    def _temp(kind: str) -> str:
        return quote_ident(f"clvflow_{kind}_{next(_TABLES)}")

    def _over(self, name: str | None) -> str:
        """``customer_facts`` over the facts tables, as segment ``name`` reads it
        (predicates refer to it by that name)."""
        if name in self.undecided and self.item_table is not None:
            columns = ", ".join(["cf.*", *item_fact_columns(self.needs, "it")])
            facts = (
                f"SELECT {columns} FROM {self.table} AS cf "
                f"LEFT JOIN {self.item_table} AS it ON it.customer_id = cf.customer_id"
            )
        else:
            facts = f"SELECT * FROM {self.table}"
        return f"WITH customer_facts AS NOT MATERIALIZED ({facts})\n"

    def member_ids(self, name: str) -> list[str]:
        """Member ids of segment ``name``, sorted."""
        compiled = self.compiled[name]
        if self.data.con is None:
            return member_ids(self.data, compiled)
        self.build()
        sql = (
            f"{self._over(name)}SELECT cf.customer_id\nFROM customer_facts AS cf\n"
            f"WHERE {compiled.predicate}\nORDER BY cf.customer_id"
        )
        return [str(v) for v in self.data.first_column(sql)]

    def close(self) -> None:
        for table in (self.table, self.item_table):
            if table is not None and self.data.con is not None:
                self.data.con.execute(f"DROP TABLE IF EXISTS {table}")
        self.table = self.item_table = None


def evaluate_segments(
    catalog: SegmentCatalog, names: list[str], data: ShopData, as_of: dt.datetime
) -> dict[str, list[str]]:
    """The sorted member ids of each segment in ``names``, computed together."""
    with SharedFacts(catalog, names, data, as_of) as shared:
        return {name: shared.member_ids(name) for name in names}
