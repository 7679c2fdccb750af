"""Attribution: an order counts for a message (or a holdout row) when the customer placed it
within the campaign's attribution window after the send.

The ledger's times are UTC; the shop's order times are naive local shop time. The window's
two ends are computed in UTC (send, send + window) and converted to shop time, then compared
with ``orders.placed_at``, so a window across a daylight-saving change is still exactly as
long as configured. An order in the windows of two messages of one campaign counts once, for
the later message (last touch within the campaign); each campaign is measured on its own.

Everything runs as one DuckDB query over the shop's orders and the ledger's rows. For a shop
whose data is in PostgreSQL, the orders placed since the first send are read into DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import duckdb
import pandas as pd

from clvflow.data.sources import ShopData, quote_literal
from clvflow.measurement.sends import SEND_COLUMNS
from clvflow.segments.attributes import sql_timestamp

KEYS = ("campaign", "occurrence", "group", "variant", "locale")
CELL_COLUMNS = (*KEYS, "recipients", "conversions", "orders", "revenue", "revenue_sq")


def _orders_connection(
    data: ShopData, since_local: dt.datetime
) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A DuckDB connection with ``orders`` and ``customers`` (id, locale) relations; True
    if the connection is ours to close."""
    if data.con is not None:
        return data.con, False
    con = duckdb.connect(":memory:")
    has_locale = "locale" in data.columns.get("customers", {})
    orders = data.frame(
        f"{data.with_clause()}SELECT order_id, customer_id, CAST(placed_at AS TIMESTAMP) AS "
        f"placed_at, CAST(total AS DOUBLE PRECISION) AS total FROM orders "
        f"WHERE placed_at >= TIMESTAMP {quote_literal(since_local.isoformat(sep=' '))}"
    )
    locale = "locale" if has_locale else "CAST(NULL AS TEXT) AS locale"
    customers = data.frame(f"{data.with_clause()}SELECT customer_id, {locale} FROM customers")
    con.register("orders", orders)
    con.register("customers", customers)
    return con, True


def attribute(
    data: ShopData,
    sends: pd.DataFrame,
    windows: Mapping[str, dt.timedelta],
    *,
    timezone: str,
    default_locale: str,
    default_window: dt.timedelta,
    until: dt.datetime | None = None,
) -> pd.DataFrame:
    """Per (campaign, occurrence, group, variant, locale): recipients, conversions (recipients
    with an attributed order), orders, revenue and the sum of squared revenue per recipient.

    ``sends`` is :func:`clvflow.measurement.sends.read_sends`'s frame. A message's locale is
    the one it was rendered in, else the customer's, else the shop's default. With
    ``until`` (shop-local), orders after it are ignored, so a report as of a past moment
    reads what was known then.
    """
    if sends.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CELL_COLUMNS})
    frame = sends[[*SEND_COLUMNS, "locale", "sent_at"]].copy()
    seconds = frame["campaign"].map(lambda c: windows.get(str(c), default_window).total_seconds())
    frame["window_seconds"] = seconds.astype("int64")
    first_send = pd.Timestamp(frame["sent_at"].min()).to_pydatetime()
    since_local = first_send - dt.timedelta(days=2)  # any UTC offset; filtered exactly below
    con, own = _orders_connection(data, since_local)
    tz = quote_literal(timezone)
    has_locale = data.con is None or "locale" in data.columns.get("customers", {})
    customer_locale = "c.locale" if has_locale else "NULL"
    cap = (
        ""
        if until is None
        else f"\n               AND CAST(o.placed_at AS TIMESTAMP) <= {sql_timestamp(until)}"
    )
    try:
        con.register("sends", frame)
        cells = con.execute(
            f"""
            WITH s AS (
              SELECT s.*,
                     timezone({tz}, s.sent_at AT TIME ZONE 'UTC') AS starts,
                     timezone({tz}, (s.sent_at + to_seconds(s.window_seconds))
                                    AT TIME ZONE 'UTC') AS ends
              FROM sends AS s
            ),
            hits AS (
              SELECT s.message_id, o.order_id, CAST(o.total AS DOUBLE) AS total,
                     ROW_NUMBER() OVER (
                       PARTITION BY s.campaign, o.order_id
                       ORDER BY s.starts DESC, s.message_id DESC) AS touch
              FROM s
              JOIN orders AS o
                ON CAST(o.customer_id AS VARCHAR) = s.customer_id
               AND CAST(o.placed_at AS TIMESTAMP) > s.starts
               AND CAST(o.placed_at AS TIMESTAMP) <= s.ends{cap}
            ),
            per_message AS (
              SELECT s.message_id, s.campaign, s.occurrence, s."group",
                     COALESCE(s.variant, '') AS variant,
                     COALESCE(s.locale, {customer_locale}, {quote_literal(default_locale)})
                       AS locale,
                     COUNT(h.order_id) AS orders,
                     COALESCE(SUM(h.total), 0) AS revenue
              FROM s
              LEFT JOIN hits AS h ON h.message_id = s.message_id AND h.touch = 1
              LEFT JOIN customers AS c ON CAST(c.customer_id AS VARCHAR) = s.customer_id
              GROUP BY ALL
            )
            SELECT campaign, occurrence, "group", variant, locale,
                   COUNT(*) AS recipients,
                   COUNT(*) FILTER (WHERE orders > 0) AS conversions,
                   SUM(orders) AS orders,
                   SUM(revenue) AS revenue,
                   SUM(revenue * revenue) AS revenue_sq
            FROM per_message
            GROUP BY ALL
            ORDER BY ALL
            """
        ).df()
    finally:
        con.unregister("sends")
        if own:
            con.close()
    for column in ("recipients", "conversions", "orders"):
        cells[column] = cells[column].astype("int64")
    for column in ("revenue", "revenue_sq"):
        cells[column] = cells[column].astype("float64")
    return cells


def rollup(cells: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Sum attribution cells to a coarser grain (e.g. campaign and group)."""
    measures = ["recipients", "conversions", "orders", "revenue", "revenue_sq"]
    if cells.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (*by, *measures)})
    return cells.groupby(list(by), as_index=False, sort=True)[measures].sum()
