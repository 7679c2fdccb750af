"""Open the shop's data as relations named customers, orders, order_items, products.

Two engines, one SQL:

- **Files** (CSV or Parquet) live in an in-process DuckDB. CSV is loaded once into memory
  tables (parsing CSV per query would be wasted work); Parquet is queried in place through
  views.
- **A database** (``data.url``, PostgreSQL) is never copied: every query runs inside it
  (push-down). The four relations are common table expressions over the configured tables
  (``prelude``), so nothing is ever written to the shop's database.

Identifier columns are always text, so ``C001`` and ``1`` behave the same everywhere.
Columns the contract types (``orders.placed_at`` a timestamp, totals, prices and quantities
numbers, ...) keep that type even when a file has no rows yet, so a new shop's empty CSV
file works like a full one; a file whose rows do not fit the type is an error naming it.
The SQL clvflow generates sticks to what both engines share (window functions, CASE,
date subtraction, STRPOS/LEFT/RIGHT), so one compiler serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from clvflow.errors import DataError
from clvflow.measurement.settings import duration
from clvflow.project.layout import Project
from clvflow.segments.attributes import kind_of

if TYPE_CHECKING:  # pandas and SQLAlchemy load when first used (a CLI answer is faster)
    import pandas as pd
    from sqlalchemy import Engine

REQUIRED: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "email", "first_name"),
    "orders": ("order_id", "customer_id", "placed_at", "total"),
    "order_items": ("order_id", "product_id", "quantity", "unit_price"),
    "products": ("product_id", "name", "category", "price"),
}
ID_COLUMNS = ("customer_id", "order_id", "product_id")
# The contract's column types (DuckDB names), for files whose reader cannot tell (no rows).
TYPED: dict[str, dict[str, str]] = {
    "customers": {"accepts_marketing": "BOOLEAN", "created_at": "TIMESTAMP"},
    "orders": {"placed_at": "TIMESTAMP", "total": "DOUBLE"},
    "order_items": {"quantity": "BIGINT", "unit_price": "DOUBLE"},
    "products": {"price": "DOUBLE"},
}
# Typed columns the segments cannot do without: a file with rows of another type is an error.
STRICT = {("orders", "placed_at"), ("orders", "total")}
OPTIONAL_TABLES = ("order_items", "products")
TABLES = ("customers", "orders", "order_items", "products")

Dialect = Literal["duckdb", "postgresql"]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def in_list(values: Sequence[str]) -> str:
    """``('a', 'b')`` for an IN test; ``(NULL)`` when empty (matches nothing)."""
    return "(" + (", ".join(quote_literal(v) for v in values) or "NULL") + ")"


@dataclass
class ShopData:
    """The shop's relations, the engine that holds them, and their column types.

    With a database, every query runs on one connection held until ``close`` (in
    autocommit), so the temporary tables clvflow makes for a run (the predictions) stay
    visible to all its queries; the shop's own tables are only read."""

    dialect: Dialect
    timezone: str = "UTC"  # the shop's; its data's times are naive local times there
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    prelude: list[str] = field(default_factory=list)  # CTEs defining the relations
    con: duckdb.DuckDBPyConnection | None = None
    engine: Engine | None = None
    prediction_horizon_days: int = 365
    cache_dir: Path | None = None  # where fitted models are kept between runs
    temporary: dict[str, object] = field(default_factory=dict)  # made for this data, by key
    _session: Any = None

    def has(self, table: str) -> bool:
        return table in self.columns

    def with_clause(self, *ctes: str) -> str:
        """``WITH`` the relations (for a database) and ``ctes``."""
        parts = [*self.prelude, *(c for c in ctes if c)]
        return "WITH " + ",\n  ".join(parts) + "\n" if parts else ""

    def session(self) -> Any:
        """The database connection every query of this data runs on (DB-API, autocommit)."""
        if self._session is None:
            assert self.engine is not None
            raw = self.engine.raw_connection()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._session = raw
        return self._session

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.con is not None:
            return self.con.execute(sql).fetchall()
        cursor = self.session().cursor()
        try:
            cursor.execute(sql)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def first_column(self, sql: str) -> list[Any]:
        """The values of the first column of the result, in order."""
        if self.con is not None:
            result = self.con.execute(sql).fetchnumpy()
            values: list[Any] = next(iter(result.values())).tolist() if result else []
            return values
        return [r[0] for r in self.rows(sql)]

    def frame(self, sql: str) -> pd.DataFrame:
        import pandas as pd

        if self.con is not None:
            result: pd.DataFrame = self.con.execute(sql).df()
            return result
        cursor = self.session().cursor()
        try:
            cursor.execute(sql)
            names = [d[0] for d in cursor.description or []]
            return pd.DataFrame.from_records(list(cursor.fetchall()), columns=names)
        finally:
            cursor.close()

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.engine is not None:
            self.engine.dispose()


def open_shop_data(project: Project) -> ShopData:
    """Open every configured source and check the required columns."""
    if project.config.data.url:
        data = _open_database(project, project.config.data.url)
    else:
        data = _open_files(project)
    data.prediction_horizon_days = duration(project.config.measurement.prediction_horizon).days
    data.cache_dir = project.cache_dir
    return data


# -- files through DuckDB ---------------------------------------------------------------
def _reader(path: Path) -> str:
    literal = quote_literal(str(path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return f"read_parquet({literal})"
    if suffix in (".csv", ".tsv", ".txt") or path.name.endswith(".csv.gz"):
        return f"read_csv({literal}, header = true, auto_detect = true, sample_size = -1)"
    raise DataError(
        f"cannot read '{path.suffix}' files",
        path=path,
        hint="use a .csv or .parquet file, or a database URL under data.url",
    )


def _describe(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE {quote_ident(name)}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _open_files(project: Project) -> ShopData:
    cfg = project.config.data
    data = ShopData(
        dialect="duckdb", timezone=project.config.shop.timezone, con=duckdb.connect(":memory:")
    )
    assert data.con is not None
    for table in TABLES:
        source: str | None = getattr(cfg, table)
        if source is None:
            continue
        path = project.resolve(source)
        if not path.exists():
            if table in OPTIONAL_TABLES:
                continue
            raise DataError(
                f"the {table} file does not exist",
                path=project.root / "clvflow.yaml",
                key=f"data.{table}",
                hint=f"expected it at {path}; `clvflow demo` generates a demo shop",
            )
        _attach(data.con, table, path)
        data.columns[table] = _check_columns(_describe(data.con, table), table, path)
    return data


def _attach(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """Parquet files become views (DuckDB reads only what a query needs); a CSV file is
    read once into a table (a view would parse and sniff the whole file at every use)."""
    kind = "VIEW" if path.suffix.lower() == ".parquet" else "TABLE"
    raw = f"{table}__raw"
    try:
        con.execute(f"CREATE {kind} {quote_ident(raw)} AS SELECT * FROM {_reader(path)}")
        present = _describe(con, raw)
    except duckdb.Error as exc:
        raise DataError(f"cannot read the {table} data: {exc}", path=path) from None
    casts = {c: "VARCHAR" for c in ID_COLUMNS if c in present and present[c] != "VARCHAR"}
    typed = {
        c: t
        for c, t in TYPED.get(table, {}).items()
        if c in present and kind_of(present[c]) != kind_of(t)
    }
    if typed and _has_rows(con, raw):
        typed = _fitting_casts(table, path, present, typed)
    if kind == "TABLE" and not (casts or typed):
        con.execute(f"ALTER TABLE {quote_ident(raw)} RENAME TO {quote_ident(table)}")
        return
    select = "SELECT *"
    if casts or typed:
        replace = ", ".join(
            f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in (casts | typed).items()
        )
        select = f"SELECT * REPLACE ({replace})"
    con.execute(f"CREATE {kind} {quote_ident(table)} AS {select} FROM {quote_ident(raw)}")
    if kind == "TABLE":
        con.execute(f"DROP TABLE {quote_ident(raw)}")  # the file's data is held once


def _has_rows(con: duckdb.DuckDBPyConnection, raw: str) -> bool:
    return con.execute(f"SELECT 1 FROM {quote_ident(raw)} LIMIT 1").fetchone() is not None


def _fitting_casts(
    table: str, path: Path, present: dict[str, str], typed: dict[str, str]
) -> dict[str, str]:
    """For a file with rows, a column the segments cannot do without (``STRICT``) must
    fit (dates become midnight timestamps); other columns keep the file's types."""
    casts: dict[str, str] = {}
    for column, sql_type in typed.items():
        if (table, column) not in STRICT:
            continue
        if sql_type == "TIMESTAMP" and present[column] == "DATE":
            casts[column] = sql_type
        else:
            expected = "timestamps" if sql_type == "TIMESTAMP" else "numbers"
            raise DataError(
                f"the {table} column '{column}' must hold {expected}, but its values are "
                f"read as {present[column].lower()}",
                path=path,
                key=column,
                hint="write times as 2026-11-23 10:00:00 and amounts as 12.50 (no currency sign)",
            )
    return casts


def _check_columns(columns: dict[str, str], table: str, where: Path | str) -> dict[str, str]:
    missing = [c for c in REQUIRED[table] if c not in columns]
    if missing:
        raise DataError(
            f"the {table} data lacks the column(s) {', '.join(missing)}",
            path=where,
            hint=f"{table} needs at least: {', '.join(REQUIRED[table])}",
        )
    return columns


# -- a database, queried in place --------------------------------------------------------
def _open_database(project: Project, url: str) -> ShopData:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    where = project.root / "clvflow.yaml"
    try:
        parsed = make_url(url)
    except SQLAlchemyError:
        raise DataError("data.url is not a database URL", path=where, key="data.url") from None
    if parsed.get_backend_name() != "postgresql":
        raise DataError(
            f"'{parsed.get_backend_name()}' databases are not supported",
            path=where,
            key="data.url",
            hint="use PostgreSQL (postgresql://user@host/db) or CSV/Parquet files",
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, pool_pre_ping=True)
    data = ShopData(dialect="postgresql", timezone=project.config.shop.timezone, engine=engine)
    try:
        inspector = inspect(engine)
        for table in TABLES:
            name: str | None = getattr(project.config.data, table)
            if name is None:
                continue
            schema, _, bare = name.rpartition(".")
            if not inspector.has_table(bare, schema=schema or None):
                if table in OPTIONAL_TABLES:
                    continue
                raise DataError(
                    f"the database has no table '{name}' for {table}",
                    path=where,
                    key=f"data.{table}",
                )
            columns = {
                str(c["name"]): str(c["type"]).upper()
                for c in inspector.get_columns(bare, schema=schema or None)
            }
            _check_columns(columns, table, f"{where} (data.{table} = {name})")
            data.columns[table] = {
                c: ("VARCHAR" if c in ID_COLUMNS else t) for c, t in columns.items()
            }
            data.prelude.append(_relation_cte(table, schema, bare, list(columns)))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DataError(
            f"cannot read the shop's database: {type(exc).__name__}", path=where, key="data.url"
        ) from None
    return data


def _relation_cte(table: str, schema: str, bare: str, columns: list[str]) -> str:
    source = (quote_ident(schema) + "." if schema else "") + quote_ident(bare)
    select = ", ".join(
        f"CAST({quote_ident(c)} AS TEXT) AS {quote_ident(c)}" if c in ID_COLUMNS else quote_ident(c)
        for c in columns
    )
    return f"{quote_ident(table)} AS (SELECT {select} FROM {source})"
