"""Attribution at scale: the report's DuckDB query against a plain Python loop per message.

    .venv/bin/python bench/report.py                          # 200,000 customers, 2,000,000 orders
    .venv/bin/python bench/report.py --customers 20000 --orders 200000   # quick check

A generated demo shop (Parquet) and a SQLite ledger with one campaign sent to every customer
(half held out, two occurrences 7 days apart, so some orders fall in two windows) 20 and 13
days before the reference day. clvflow: ``measure_campaigns`` (ledger read, DuckDB join,
statistics). Naive: the same rules in Python, one message at a time over a dict of each
customer's orders (times converted with zoneinfo per message). Both must agree on every
group's recipients, conversions, orders and revenue. Prints times, the ratio and the load
average (other work on the machine competes for the cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import insert

from clvflow.demo.shop import ShopSize, generate_shop
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.planning.plan import in_holdout
from clvflow.project.layout import Project
from clvflow.reporting.report import measure_campaigns

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = dt.date(2026, 11, 23)
TZ = "Europe/Budapest"
WINDOW = dt.timedelta(days=5)


def shop(customers: int, orders: int) -> Path:
    folder = ROOT / "bench" / ".data" / f"report-{customers}x{orders}"
    if not (folder / "orders.parquet").exists():
        size = ShopSize(customers=customers, orders=orders)
        generate_shop(folder, reference=REFERENCE, seed=7, size=size, fmt="parquet")
    return folder


def project(data: Path, work: Path) -> Project:
    config = (ROOT / "clvflow.yaml").read_text().split("data:")[0]
    config += "data:\n" + "".join(
        f"  {t}: {data / (t + '.parquet')}\n"
        for t in ("customers", "orders", "order_items", "products")
    )
    config += "ledger: sqlite:///.clvflow/ledger.db\n"
    (work / "clvflow.yaml").write_text(config)
    (work / "prefect.yaml").write_text("deployments: []\n")
    return Project.load(work)


def fill_ledger(loaded: Project, ids: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for days in (20, 13):
        sent = dt.datetime.combine(REFERENCE, dt.time(9)) - dt.timedelta(days=days)
        for cid in ids:
            held = in_holdout("bench", cid, 50)
            rows.append({
                "campaign": "bench", "occurrence": sent.date().isoformat(), "customer_id": cid,
                "email": f"{cid}@example.com", "kind": "marketing",
                "status": "holdout" if held else "sent", "run_id": "bench", "locale": "en",
                "planned_at": sent, "finished_at": None if held else sent,
            })  # fmt: skip
    ledger = Ledger(loaded.ledger_url)
    with ledger.engine.begin() as con:
        for start in range(0, len(rows), 50_000):
            con.execute(insert(messages), rows[start : start + 50_000])
    ledger.close()
    return rows


def naive(data: Path, rows: list[dict[str, object]]) -> dict[str, tuple[int, int, int, float]]:
    orders = pd.read_parquet(
        data / "orders.parquet", columns=["order_id", "customer_id", "placed_at", "total"]
    )
    by_customer: dict[str, list[tuple[dt.datetime, str, float]]] = defaultdict(list)
    for oid, cid, at, total in zip(orders["order_id"], orders["customer_id"], orders["placed_at"],
                                   orders["total"], strict=True):  # fmt: skip
        by_customer[str(cid)].append((at.to_pydatetime(), str(oid), float(total)))
    zone = ZoneInfo(TZ)
    # last touch: an order in two windows of the campaign counts for the later send
    latest: dict[tuple[str, str], tuple[dt.datetime, int, float]] = {}
    hits: dict[int, list[float]] = defaultdict(list)
    for index, row in enumerate(rows):
        sent = row["finished_at"] or row["planned_at"]
        assert isinstance(sent, dt.datetime)
        start = sent.replace(tzinfo=dt.UTC).astimezone(zone).replace(tzinfo=None)
        end = (sent + WINDOW).replace(tzinfo=dt.UTC).astimezone(zone).replace(tzinfo=None)
        for at, oid, total in by_customer.get(str(row["customer_id"]), []):
            if start < at <= end:
                key = (str(row["customer_id"]), oid)
                if key not in latest or latest[key][0] < start:
                    latest[key] = (start, index, total)
    for _, index, total in latest.values():
        hits[index].append(total)
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for index, row in enumerate(rows):
        group = "holdout" if row["status"] == "holdout" else "treated"
        got = hits.get(index, [])
        cell = out[group]
        cell[0] += 1
        cell[1] += bool(got)
        cell[2] += len(got)
        cell[3] += sum(got)
    return {g: (int(c[0]), int(c[1]), int(c[2]), round(c[3], 2)) for g, c in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=2_000_000)
    args = parser.parse_args()
    data = shop(args.customers, args.orders)
    work = Path(tempfile.mkdtemp(prefix="clvflow-bench-report-"))
    try:
        loaded = project(data, work)
        ids = pd.read_parquet(data / "customers.parquet", columns=["customer_id"])["customer_id"]
        rows = fill_ledger(loaded, [str(c) for c in ids])
        since = dt.datetime.combine(REFERENCE, dt.time()) - dt.timedelta(days=30)
        until = dt.datetime.combine(REFERENCE, dt.time(12))
        began = time.perf_counter()
        measured = measure_campaigns(loaded, since, until)
        ours = time.perf_counter() - began
        began = time.perf_counter()
        expected = naive(data, rows)
        theirs = time.perf_counter() - began
        cells = measured.cells.groupby("group")[
            ["recipients", "conversions", "orders", "revenue"]
        ].sum()
        got = {
            str(g): (
                int(r.recipients),
                int(r.conversions),
                int(r.orders),
                round(float(r.revenue), 2),
            )
            for g, r in cells.iterrows()
        }
        agree = got.keys() == expected.keys() and all(
            got[g][:3] == expected[g][:3] and abs(got[g][3] - expected[g][3]) < 0.05 for g in got
        )
        print(f"messages: {len(rows):,} over {args.customers:,} customers, {args.orders:,} orders")
        for group, cell in sorted(got.items()):
            print(f"  {group:8} recipients {cell[0]:>9,}  conversions {cell[1]:>8,}  "
                  f"orders {cell[2]:>8,}  revenue {cell[3]:>14,.2f}")  # fmt: skip
        print(f"results agree with the naive loop: {'yes' if agree else 'NO: ' + str(expected)}")
        print(f"clvflow measure_campaigns: {ours:8.2f} s")
        print(f"naive Python loop:         {theirs:8.2f} s   ({theirs / ours:.1f}× clvflow)")
        print("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
