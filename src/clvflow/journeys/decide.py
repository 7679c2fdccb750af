"""Who is due for which step, as two set-based queries (DuckDB, over the ledger's entries
and the shop's facts), never a loop over customers.

Each entry not exited is at one step (the next to decide). The first query places it by
time: ``exit`` (an order placed after entering, when the journey exits on orders),
``waiting`` (not yet due), ``missing_date`` (an ``at`` step whose attribute is empty),
``expired`` (due longer ago than the step's ``until``), or a candidate. The second query
applies each candidate step's ``where`` and ``unless``: ``where`` and ``unless`` skips, or
``due``. Times are naive shop-local, like the shop's data and a run's ``as_of``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd

from clvflow.data.sources import quote_ident, quote_literal
from clvflow.project.journey_spec import JourneySpec, Step, period_parts
from clvflow.segments.attributes import sql_timestamp

EXIT = "exit"
WAITING = "waiting"
DUE = "due"


@dataclass
class Facts:
    """What the decision reads besides the entries (every frame keyed by customer_id)."""

    last_orders: pd.DataFrame  # customer_id, last_order_at
    anchors: pd.DataFrame  # customer_id and each ``at`` attribute, as timestamps
    redeemed: pd.DataFrame  # occurrence (the entry's), customer_id: its code was used
    engaged: pd.DataFrame  # occurrence (the step's), customer_id, event (open, click)
    # step index → the customers meeting its ``where`` as of the run (asked only for steps
    # some entry is due for)
    where: Callable[[int], pd.DataFrame] = lambda _step: pd.DataFrame({"customer_id": []})


def interval(period: str) -> str:
    """A period of the spec (``'-10 months'``) as a DuckDB interval literal."""
    count, unit = period_parts(period)
    return f"INTERVAL '{count} {unit}'"


def anchor_column(attribute: str) -> str:
    return quote_ident(f"at_{attribute}")


def _due_at(index: int, step: Step) -> str:
    if step.at is not None:
        return (
            f"CAST(a.{anchor_column(step.at.attribute)} AS TIMESTAMP) + {interval(step.at.offset)}"
        )
    return f"e.step_at + {interval(step.wait or '0 days')}"


def _per_step(spec: JourneySpec, expressions: list[str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {i} THEN {sql}" for i, sql in enumerate(expressions))
    return f"CASE e.step {whens} ELSE {default} END"


def timing_sql(spec: JourneySpec, as_of: dt.datetime) -> str:
    """Entries placed by time (see the module's docstring)."""
    due = _per_step(spec, [_due_at(i, s) for i, s in enumerate(spec.steps)])
    until = _per_step(
        spec,
        [
            f"({_due_at(i, s)}) + {interval(s.until)}" if s.until else "NULL"
            for i, s in enumerate(spec.steps)
        ],
    )
    ordered = "lo.last_order_at > e.entered_at"
    now = sql_timestamp(as_of)
    exits = f"{ordered}" if spec.exit.on_order else "FALSE"
    return f"""
SELECT e.id, e.occurrence, e.customer_id, e.step, e.entered_at,
       COALESCE({ordered}, FALSE) AS ordered, t.due_at,
       CASE WHEN COALESCE({exits}, FALSE) THEN '{EXIT}'
            WHEN t.due_at IS NULL THEN 'missing_date'
            WHEN t.due_at > {now} THEN '{WAITING}'
            WHEN t.until_at IS NOT NULL AND t.until_at < {now} THEN 'expired'
            ELSE '{DUE}' END AS decision
FROM entries AS e
LEFT JOIN last_orders AS lo ON lo.customer_id = e.customer_id
LEFT JOIN anchors AS a ON a.customer_id = e.customer_id
CROSS JOIN LATERAL (SELECT {due} AS due_at, {until} AS until_at) AS t
WHERE e.step < {len(spec.steps)}
"""


def conditions_sql(spec: JourneySpec, where_steps: set[int]) -> str:
    """The candidates (``timed`` rows decided ``due``) with ``where`` and ``unless``."""
    where = _per_step(
        spec,
        [
            f"e.customer_id IN (SELECT customer_id FROM where_{i})" if i in where_steps else "TRUE"
            for i in range(len(spec.steps))
        ],
        "TRUE",
    )
    unless = _per_step(spec, [_unless(s) for s in spec.steps], "FALSE")
    return f"""
SELECT e.id, e.occurrence, e.customer_id, e.step, e.due_at,
       CASE WHEN NOT COALESCE({where}, FALSE) THEN 'where'
            WHEN COALESCE({unless}, FALSE) THEN 'unless'
            ELSE '{DUE}' END AS decision
FROM timed AS e
WHERE e.decision = '{DUE}'
"""


def _unless(step: Step) -> str:
    rule = step.unless
    if rule is None or not rule.any:
        return "FALSE"
    tests = []
    if rule.ordered:
        tests.append("e.ordered")
    if rule.promo_redeemed:
        tests.append(
            "EXISTS (SELECT 1 FROM redeemed AS r WHERE r.customer_id = e.customer_id "
            "AND r.occurrence = e.occurrence)"
        )
    for event, ref in (("click", rule.clicked), ("open", rule.opened)):
        if ref is not None:
            tests.append(
                "EXISTS (SELECT 1 FROM engaged AS g WHERE g.customer_id = e.customer_id "
                f"AND g.occurrence = e.occurrence || '/' || {quote_literal(ref)} "
                f"AND g.event = {quote_literal(event)})"
            )
    return "(" + " OR ".join(tests) + ")"


def decide(
    spec: JourneySpec, entries: pd.DataFrame, facts: Facts, as_of: dt.datetime
) -> pd.DataFrame:
    """Every entry at a step (id, occurrence, customer_id, step, due_at, decision)."""
    con = duckdb.connect(":memory:")
    try:
        con.register("entries", entries)
        con.register("last_orders", facts.last_orders)
        con.register("anchors", facts.anchors)
        con.register("redeemed", facts.redeemed)
        con.register("engaged", facts.engaged)
        con.execute(f"CREATE TEMP TABLE timed AS {timing_sql(spec, as_of)}")
        due = con.execute(f"SELECT DISTINCT step FROM timed WHERE decision = '{DUE}'").fetchall()
        where_steps = {int(r[0]) for r in due if spec.steps[int(r[0])].where is not None}
        for index in where_steps:
            con.register(f"where_{index}", facts.where(index))
        checked = con.execute(conditions_sql(spec, where_steps)).df()
        timed = con.execute(
            f"SELECT id, occurrence, customer_id, step, due_at, decision FROM timed "
            f"WHERE decision <> '{DUE}'"
        ).df()
    finally:
        con.close()
    return pd.concat([timed, checked], ignore_index=True)
