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
   bought", that is the customers with a wedding soon.

Each segment is then its predicate over that table; the members are exactly those of
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
        self.undecided: list[str] = []
        for name in names:
            masked = compile_segment(
                catalog, name, data, as_of, self.needs, unknown_item_tests=True
            ).predicate
            if masked != self.compiled[name].predicate:
                self.undecided.append(masked)
        self.table: str | None = None

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
        base = self._temp("customer_facts")
        con.execute(
            f"CREATE TEMP TABLE {base} AS "
            f"{self.data.with_clause(facts_sql(self.needs, item_tests=False))}"
            "SELECT * FROM customer_facts"
        )
        if not item_facts(self.needs):
            self.table = base
            return
        candidates = self._temp("candidates")
        undecided = " OR ".join(f"({p}) IS NULL" for p in self.undecided) or "FALSE"
        con.execute(
            f"CREATE TEMP TABLE {candidates} AS {self._over(base)}"
            f"SELECT cf.customer_id FROM customer_facts AS cf WHERE {undecided}"
        )
        table = self._temp("customer_facts")
        ctes = item_facts_sql(self.needs, f"SELECT customer_id FROM {candidates}")
        columns = ",\n  ".join(["cf.*", *item_fact_columns(self.needs, "it")])
        con.execute(
            f"CREATE TEMP TABLE {table} AS {self.data.with_clause(*ctes)}"
            f"SELECT {columns}\nFROM {base} AS cf\n"
            "LEFT JOIN item_facts AS it ON it.customer_id = cf.customer_id"
        )
        con.execute(f"DROP TABLE {candidates}")
        con.execute(f"DROP TABLE {base}")
        self.table = table

    @staticmethod
    def _temp(kind: str) -> str:
        return quote_ident(f"clvflow_{kind}_{next(_TABLES)}")

    @staticmethod
    def _over(table: str) -> str:
        """``customer_facts`` as the name of ``table`` (predicates refer to it by name)."""
        return f"WITH customer_facts AS NOT MATERIALIZED (SELECT * FROM {table})\n"

    def member_ids(self, name: str) -> list[str]:
        """Member ids of segment ``name``, sorted."""
        compiled = self.compiled[name]
        if self.data.con is None:
            return member_ids(self.data, compiled)
        self.build()
        assert self.table is not None
        sql = (
            f"{self._over(self.table)}SELECT cf.customer_id\nFROM customer_facts AS cf\n"
            f"WHERE {compiled.predicate}\nORDER BY cf.customer_id"
        )
        return [str(v) for v in self.data.first_column(sql)]

    def close(self) -> None:
        if self.table is not None and self.data.con is not None:
            self.data.con.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.table = None


def evaluate_segments(
    catalog: SegmentCatalog, names: list[str], data: ShopData, as_of: dt.datetime
) -> dict[str, list[str]]:
    """The sorted member ids of each segment in ``names``, computed together."""
    with SharedFacts(catalog, names, data, as_of) as shared:
        return {name: shared.member_ids(name) for name in names}
