"""A hand-made ledger and order history for the attribution tests (DuckDB and PostgreSQL).

The shop is in Europe/Budapest: UTC+1 in winter, UTC+2 until 2026-10-25 03:00. The ledger
keeps naive UTC, the orders naive local time. Every expected number below is worked out
by hand from these rows (see the comments).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert

from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger

UTC = dt.datetime

# order_id, customer_id, placed_at (local), total
ORDERS = [
    ("O1", "C1", "2025-01-10 10:00:00", "100.00"),
    # winter, occurrence 2026-11-16 (sent to C1 at 09:00 UTC = 10:00 local)
    ("W0", "C1", "2026-11-16 09:30:00", "11.00"),  # 08:30 UTC: before the send
    ("W1", "C1", "2026-11-17 12:00:00", "15.00"),  # first window only
    # 08:30 UTC, inside both C1 windows: counts once, for the later occurrence. Read as UTC
    # it would fall after the first window's end (09:00) and before the second send.
    ("W2", "C1", "2026-11-21 09:30:00", "40.00"),
    ("W3", "C1", "2026-11-24 10:30:00", "60.00"),  # 09:30 UTC: after the second window
    ("H1", "C2", "2026-11-18 12:00:00", "25.00"),  # the holdout customer buys anyway
    # autumn (2-day window from attribution_days), C3 sent 2026-10-23 10:00 UTC = 12:00
    # CEST; the window ends 2026-10-25 10:00 UTC = 11:00 CET, after the clocks went back
    ("A1", "C3", "2026-10-25 10:30:00", "70.00"),  # 09:30 UTC: inside
    ("A2", "C3", "2026-10-25 11:30:00", "500.00"),  # 10:30 UTC: outside (48 h have passed)
    ("F1", "C5", "2026-11-17 12:00:00", "999.00"),  # C5's message failed: not a recipient
]

ORDERS_CSV = "order_id,customer_id,placed_at,total,currency\n" + "".join(
    f"{o},{c},{t},{v},EUR\n" for o, c, t, v in ORDERS
)

PREFECT_YAML = """\
deployments:
  - name: winter
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: winter
      spec: {segment: everyone, template: hello}
  - name: autumn
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: autumn
      spec: {segment: everyone, template: hello, attribution_days: 2}
"""

LEDGER_ROWS: list[dict[str, Any]] = [
    # campaign, occurrence, customer, status, variant, locale, planned_at, finished_at (UTC)
    dict(campaign="winter", occurrence="2026-11-16", customer_id="C1", status="sent",
         variant="a", locale="en", planned_at=UTC(2026, 11, 16, 8, 59),
         finished_at=UTC(2026, 11, 16, 9, 0)),
    dict(campaign="winter", occurrence="2026-11-16", customer_id="C4", status="sent",
         variant="b", locale=None, planned_at=UTC(2026, 11, 16, 8, 59),
         finished_at=UTC(2026, 11, 16, 9, 0)),
    dict(campaign="winter", occurrence="2026-11-16", customer_id="C2", status="holdout",
         variant=None, locale=None, planned_at=UTC(2026, 11, 16, 9, 0), finished_at=None),
    dict(campaign="winter", occurrence="2026-11-16", customer_id="C5", status="failed",
         variant="a", locale="en", planned_at=UTC(2026, 11, 16, 8, 59),
         finished_at=UTC(2026, 11, 16, 9, 0)),
    dict(campaign="winter", occurrence="2026-11-19", customer_id="C1", status="sent",
         variant="a", locale="en", planned_at=UTC(2026, 11, 19, 8, 59),
         finished_at=UTC(2026, 11, 19, 9, 0)),
    dict(campaign="autumn", occurrence="once", customer_id="C3", status="sent",
         variant=None, locale="ru", planned_at=UTC(2026, 10, 23, 9, 59),
         finished_at=UTC(2026, 10, 23, 10, 0)),
]  # fmt: skip

# campaign, occurrence, group, variant, locale → recipients, conversions, orders, revenue
EXPECTED_CELLS = {
    ("autumn", "once", "treated", "", "ru"): (1, 1, 1, 70.0),
    ("winter", "2026-11-16", "holdout", "", "hu"): (1, 1, 1, 25.0),  # locale from customers
    ("winter", "2026-11-16", "treated", "a", "en"): (1, 1, 1, 15.0),  # W1 (W0 was before)
    ("winter", "2026-11-16", "treated", "b", "hu"): (1, 0, 0, 0.0),
    ("winter", "2026-11-19", "treated", "a", "en"): (1, 1, 1, 40.0),  # W2, last touch
}


def fill_ledger(url: str) -> None:
    ledger = Ledger(url)
    with ledger.engine.begin() as con:
        con.execute(
            insert(messages),
            [{**row, "email": f"{row['customer_id'].lower()}@example.com", "kind": "marketing",
              "template": "hello", "run_id": "r-" + row["campaign"]} for row in LEDGER_ROWS],
        )  # fmt: skip
    ledger.close()


def cells_as_dict(cells: Any) -> dict[tuple[str, ...], tuple[int, int, int, float]]:
    return {
        (r.campaign, r.occurrence, r.group, r.variant, r.locale): (
            int(r.recipients), int(r.conversions), int(r.orders), round(float(r.revenue), 2),
        )
        for r in cells.itertuples(index=False)
    }  # fmt: skip
