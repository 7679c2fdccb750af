"""What a journey's decision reads besides its entries, each fetched as one query: the
customers' latest orders and ``at`` dates from the shop's data, the codes used and the
emails opened or clicked from the ledger, and each step's ``where`` as a segment."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvflow.data.sources import ShopData, quote_ident
from clvflow.errors import ConfigError
from clvflow.journeys.catalog import Journey
from clvflow.journeys.decide import Facts
from clvflow.ledger import journeys as state
from clvflow.ledger.store import Ledger
from clvflow.segments.attributes import sql_timestamp
from clvflow.segments.catalog import Segment, SegmentCatalog, compile_segment
from clvflow.segments.conditions import parse_condition
from clvflow.segments.members import member_ids


def anchor_attributes(journey: Journey) -> list[str]:
    return list(dict.fromkeys(s.at.attribute for s in journey.spec.steps if s.at is not None))


def check_anchors(data: ShopData, journey: Journey) -> None:
    """Every ``at`` attribute is a date or timestamp column of the customers."""
    columns = data.columns["customers"]
    for index, step in enumerate(journey.spec.steps):
        if step.at is None:
            continue
        kind = columns.get(step.at.attribute)
        if kind is None or not any(t in kind.upper() for t in ("DATE", "TIMESTAMP")):
            dated = sorted(
                c for c, t in columns.items() if "DATE" in t.upper() or "TIME" in t.upper()
            )
            raise ConfigError(
                f"journey '{journey.name}', step '{step.name}': at.attribute "
                f"'{step.at.attribute}' is not a date column of the customers",
                key=f"steps[{index}].at.attribute",
                hint="date columns: " + (", ".join(dated) or "(none)"),
            )


def gather(
    data: ShopData,
    catalog: SegmentCatalog,
    ledger: Ledger,
    journey: Journey,
    as_of: dt.datetime,
) -> Facts:
    check_anchors(data, journey)
    last_orders = data.frame(
        f"{data.with_clause()}SELECT CAST(customer_id AS VARCHAR) AS customer_id, "
        "CAST(MAX(placed_at) AS TIMESTAMP) AS last_order_at FROM orders "
        f"WHERE placed_at <= {sql_timestamp(as_of)} GROUP BY customer_id"
    )
    attributes = anchor_attributes(journey)
    if attributes:
        picked = ", ".join(
            f"CAST({quote_ident(a)} AS TIMESTAMP) AS {quote_ident('at_' + a)}" for a in attributes
        )
        anchors = data.frame(
            f"{data.with_clause()}SELECT CAST(customer_id AS VARCHAR) AS customer_id, {picked} "
            "FROM customers"
        )
    else:
        anchors = pd.DataFrame({"customer_id": pd.Series(dtype="string")})
    with ledger.engine.connect() as con:
        redeemed = state.redeemed(con, journey.name)
        kinds = [
            kind
            for step in journey.spec.steps
            if step.unless is not None
            for kind, ref in (("click", step.unless.clicked), ("open", step.unless.opened))
            if ref is not None
        ]
        engaged = state.engaged(con, journey.name, kinds)  # only what a step tests

    def where(index: int) -> pd.DataFrame:
        return pd.DataFrame(
            {"customer_id": where_members(data, catalog, journey, index, as_of)}, dtype="string"
        )

    return Facts(last_orders, anchors, redeemed, engaged, where)


def ordered_between(data: ShopData, since: dt.datetime, until: dt.datetime) -> list[str]:
    """Customers with an order placed after ``since`` and at or before ``until``."""
    return [
        str(c)
        for c in data.first_column(
            f"{data.with_clause()}SELECT DISTINCT CAST(customer_id AS VARCHAR) FROM orders "
            f"WHERE placed_at > {sql_timestamp(since)} AND placed_at <= {sql_timestamp(until)}"
        )
    ]


def where_members(
    data: ShopData, catalog: SegmentCatalog, journey: Journey, index: int, as_of: dt.datetime
) -> list[str]:
    """The customers meeting step ``index``'s ``where`` as of ``as_of`` (it may refer to
    the project's segments)."""
    step = journey.spec.steps[index]
    name = f"{journey.name}.{step.name}.where"
    doc, loc = journey.document()
    condition = parse_condition(step.where, (*loc, "steps", index, "where"))
    segment = Segment(name, doc.path, name, condition, doc)
    extended = SegmentCatalog({**catalog.segments, name: segment})
    return [str(c) for c in member_ids(data, compile_segment(extended, name, data, as_of))]
