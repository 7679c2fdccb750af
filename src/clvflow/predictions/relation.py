"""The predicted attributes as a relation the segment queries join: a temporary table in
the engine that holds the shop's data (DuckDB, or the PostgreSQL session of the data),
made once per ``as_of`` day for each opened :class:`~clvflow.data.sources.ShopData`.

When the models cannot be fitted (a new shop, no repeat purchases), a segment that tests
a predicted attribute is an error saying why; elsewhere (a template's ``customer``, the
members' columns) the attributes are missing and a warning says why.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd

from clvflow.data.sources import ShopData, quote_ident
from clvflow.errors import DataError
from clvflow.predictions.fit import fit_models
from clvflow.predictions.scores import score
from clvflow.predictions.summary import read_summary
from clvflow.segments.attributes import PREDICTED

log = logging.getLogger(__name__)
PREDICTED_NAMES = "p_alive, predicted_orders, expected_order_value and predicted_clv"


@dataclass(frozen=True)
class _Made:
    """The relation made for one as_of day, and why it is empty when the models could not
    be fitted."""

    relation: str
    problem: DataError | None


def predictions_relation(data: ShopData, as_of: dt.datetime, *, strict: bool) -> str:
    """The name of the relation with customer_id and the predicted attributes as of
    ``as_of`` (made on first use); ``strict``: an unfit model raises :class:`DataError`."""
    key = f"predictions:{as_of.date().isoformat()}:{data.prediction_horizon_days}"
    made = data.temporary.get(key)
    if not isinstance(made, _Made):
        made = _make(data, as_of)
        data.temporary[key] = made
    if made.problem is not None:
        if strict:
            hint = f"{PREDICTED_NAMES} come from these models; {made.problem.hint or ''}"
            raise DataError(made.problem.message, hint=hint.rstrip("; "))
        log.warning("predicted attributes are missing: %s", made.problem.message)
    return made.relation


def _make(data: ShopData, as_of: dt.datetime) -> _Made:
    name = quote_ident(f"clvflow_predictions_{as_of:%Y%m%d}_{data.prediction_horizon_days}")
    problem = None
    try:
        summary = read_summary(data, as_of)
        frame = score(fit_models(summary, data.cache_dir), summary, data.prediction_horizon_days)
    except DataError as exc:
        problem = exc
        frame = pd.DataFrame({"customer_id": pd.Series([], dtype=str)})
        for column in PREDICTED:
            frame[column] = pd.Series([], dtype="float64")
    _store(data, name, frame)
    return _Made(name, problem)


def _store(data: ShopData, name: str, frame: pd.DataFrame) -> None:
    columns = [c for c in frame.columns if c != "customer_id"]
    if data.con is not None:
        data.con.register("clvflow_scores", frame)
        try:
            data.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM clvflow_scores")
        finally:
            data.con.unregister("clvflow_scores")
        return
    cursor = data.session().cursor()
    try:
        definition = ", ".join(f"{c} DOUBLE PRECISION" for c in columns)
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(f"CREATE TEMP TABLE {name} (customer_id TEXT PRIMARY KEY, {definition})")
        rows = frame.to_csv(index=False, header=False, float_format="%.17g")
        with cursor.copy(f"COPY {name} FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(rows)
        cursor.execute(f"ANALYZE {name}")
    finally:
        cursor.close()
