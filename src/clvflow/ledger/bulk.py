"""Many rows, or many keys, bound in one statement however many they are: the writes a
campaign makes per recipient (claims, outcomes, promo codes) are ``INSERT … SELECT`` or
``UPDATE … FROM`` a table of rows; its reads and status changes for many messages test the
key ``IN`` a list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    String,
    any_,
    bindparam,
    column,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def rows_table(
    con: Connection,
    name: str,
    types: Mapping[str, TypeEngine[Any]],
    columns: Mapping[str, Sequence[Any]],
) -> FromClause:
    """The rows given column by column (``columns``: name → values, all equally long) as a
    table ``name`` whose columns have ``types`` (name → type)."""
    if len({len(values) for values in columns.values()}) > 1:
        raise ValueError(f"columns of {name} differ in length")
    dialect = con.dialect
    # one bound value rather than an executemany, which costs SQLite 2-3x the CPU row by row
    if dialect.name == "postgresql":  # an array per column, read by unnest
        arrays = [
            bindparam(f"{name}_{c}", list(columns[c]), type_=ARRAY(t)) for c, t in types.items()
        ]
        return (
            func.unnest(*arrays)
            .table_valued(*(column(c, t) for c, t in types.items()))
            .render_derived(name=name)
        )
    # SQLite: a JSON array of rows, read by json_each, each value as SQLAlchemy binds its type
    bound = []
    for c, t in types.items():
        process = t.dialect_impl(dialect).bind_processor(dialect)
        bound.append(columns[c] if process is None else [process(v) for v in columns[c]])
    packed = orjson.dumps(list(zip(*bound, strict=True))).decode()
    rows = func.json_each(bindparam(name, packed, type_=String)).table_valued("value")
    return (
        select(
            *(
                func.json_extract(rows.c.value, f"$[{i}]", type_=t).label(c)
                for i, (c, t) in enumerate(types.items())
            )
        )
        .select_from(rows)
        .subquery(name)
    )


def among(con: Connection, key: ColumnElement[Any], keys: Iterable[Any]) -> ColumnElement[bool]:
    """``key IN keys``, the keys bound as one value however many they are."""
    if con.dialect.name == "postgresql":  # = ANY(array): an IN over unnest may loop per row
        return key == any_(bindparam(None, list(keys), type_=ARRAY(key.type)))
    given = rows_table(con, "keys", {"key": key.type}, {"key": list(keys)})
    return key.in_(select(given.c.key))
