"""Benchmark: deciding who is due for which step of a journey, with reasons, at scale.

The journey is prefect.yaml's ``win-back-series`` (offer → reminder 14 days later unless
the offer's code was redeemed → last chance 5 days later where ``historical_clv`` is in the
top 30 %; an order placed after entering ends the journey). Measured, each side in its own
child process:

- **clvflow**: ``clvflow.journeys.run.decide_now(ws, journey, as_of)`` end to end, as a
  run's decision does it: the active entries read from the SQLite ledger, the facts (the
  customers' last orders from the shop's Parquet files, the redeemed codes and opened or
  clicked steps from the ledger, the ``where`` segment) and the two DuckDB queries. Wall
  time of each of ``--repeat`` calls (best and median; a fresh workspace each time, its
  opening timed apart), peak RSS (``ru_maxrss`` and ``VmHWM``), then one more call with
  timers around its parts (ledger read, facts, ``where``, queries) to show where the time
  goes;
- **a naive pandas baseline** of the same decision, written plainly: ``pd.read_sql`` of
  the entries and the redeemed codes, ``pd.read_parquet`` of the orders, ``groupby`` max
  and sum, a merge, and a Python function per entry through ``df.apply(..., axis=1)``.
  Its decisions must equal clvflow's entry by entry (the counts of agreeing and differing
  entries are printed, and how many fit the state the setup meant to create).

Setup (timed, but outside the decision's figure): the demo shop of ``--customers``
customers and ten times as many orders (``bench/segments.py``'s generator and cache in
``bench/.data/``), a project folder (the repository's segments, templates, prefect.yaml and
clvflow.yaml, data pointing at the Parquet files, a SQLite ledger), and the journey's state
written straight into the ledger: one active entry per customer, ``--due`` of them due at
``as_of`` (60 % for the reminder, 40 % for the last chance; 20 % of the reminder's with a
redeemed code, so ``unless`` skips), up to ``--customers / 20`` who ordered after entering
since the journey's previous run a day before (they exit), the rest waiting; the previous
run in the ledger; the offer's message and promo code for every entry, the reminder's
message for those past it, and some opens and clicks. As a run does, the decision reads
only the entries that may change (wait over, or an order since the previous run) and
counts the rest as waiting.

    .venv/bin/python bench/journey.py                        # 1,000,000 customers, 100,000 due
    .venv/bin/python bench/journey.py --repeat 3
    .venv/bin/python bench/journey.py --customers 50000 --due 5000 --repeat 2   # quick check
    .venv/bin/python bench/journey.py --baseline-sample 100000   # apply() on a sample, scaled
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segments import ensure_data, hwm_bytes, max_rss_bytes

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy import Connection, Table

    from clvflow.journeys.catalog import Journey

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TABLES = ("customers", "orders", "order_items", "products")
JOURNEY = "win-back-series"
SEED = 11
DEFAULT_AS_OF = "2026-11-23T10:00"
TARGET_SECONDS = 5.0
TARGET_RSS_BYTES = 1_500_000_000  # 1.5 GB (decimal)

DAY = 86_400
HOUR = 3_600
MARGIN = 3 * HOUR  # no entry is due within this of ``as_of``'s thresholds
REMINDER_SHARE = 0.6  # of the due entries; the rest are due for the last chance
REDEEMED_DUE = 0.20  # of the entries due for the reminder: their code was used
REDEEMED_OTHER = 0.05
OPENED, CLICKED = 0.15, 0.04  # of the offers
RUN_ID = "bench-journey-setup"
PREVIOUS_RUN = DAY  # the journey's previous run, this long before as_of


# --- setup: project folder and journey state ----------------------------------------------------


def build_project(data_dir: Path, into: Path) -> None:
    """The repository's segments, templates and prefect.yaml; clvflow.yaml with the data's
    paths absolute and a SQLite ledger inside the folder."""
    import yaml

    config = yaml.safe_load((REPO / "clvflow.yaml").read_text(encoding="utf-8"))
    config["data"] = {t: str(data_dir / f"{t}.parquet") for t in TABLES}
    config["ledger"] = "sqlite:///.clvflow/ledger.db"
    for folder in ("segments", "templates"):
        shutil.copytree(REPO / folder, into / folder)
    shutil.copy(REPO / "prefect.yaml", into / "prefect.yaml")
    (into / "clvflow.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")


def check_shape(journey: Journey) -> None:
    """The state below and the pandas baseline are written for this shape of the journey."""
    steps = journey.spec.steps
    shape = [
        (s.name, s.wait, s.at, s.until, bool(s.unless and s.unless.any), s.where) for s in steps
    ]
    expected = [
        ("offer", None, None, None, False, None),
        ("reminder", "14 days", None, None, True, None),
        ("last-chance", "5 days", None, None, False, {"historical_clv": {"top_percent": 30}}),
    ]
    unless = steps[1].unless
    if (
        shape != expected
        or unless is None
        or not unless.promo_redeemed
        or unless.ordered
        or unless.clicked
        or unless.opened
        or not journey.spec.exit.on_order
    ):
        raise SystemExit(f"{JOURNEY} in prefect.yaml changed; update bench/journey.py: {shape}")


def uniform(rng: np.random.Generator, low: Any, high: Any, n: int) -> np.ndarray:
    """Whole seconds drawn uniformly from [low, high]."""
    import numpy as np

    return np.floor(rng.uniform(low, high, n)).astype(np.int64)


def plan_state(
    last_age: np.ndarray, due: int, exits: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Each customer's entry as ages in seconds before ``as_of`` (``last_age``: their last
    order's, -1 without one): step, entered, step_at, the intended decision by time
    (``exit`` / ``waiting`` / ``due``), and whether and when the offer's code was used."""
    import numpy as np
    import pandas as pd

    n = len(last_age)
    bought = last_age >= 0
    step = np.ones(n, dtype=np.int64)
    entered = np.zeros(n, dtype=np.int64)
    step_age = np.zeros(n, dtype=np.int64)
    intent = np.full(n, "waiting", dtype=object)

    # exits: ordered since the journey's previous run, a day ago, after entering (1 hour to
    # 10 days before the order); earlier orders after entering were exits of earlier runs
    pool = np.flatnonzero(bought & (last_age <= PREVIOUS_RUN))
    chosen = rng.choice(pool, min(exits, len(pool)), replace=False)
    entered[chosen] = last_age[chosen] + uniform(rng, HOUR, 10 * DAY, len(chosen))
    later = rng.random(len(chosen)) < 0.5
    step[chosen[later]] = 2
    step_age[chosen] = entered[chosen]
    past_reminder = entered[chosen[later]] - 14 * DAY - uniform(rng, 0, DAY, int(later.sum()))
    step_age[chosen[later]] = np.maximum(past_reminder, 60)
    intent[chosen] = "exit"
    taken = np.zeros(n, dtype=bool)
    taken[chosen] = True

    # due: no order in the last 26 days (they entered at most 25 days ago)
    pool = np.flatnonzero(~taken & (~bought | (last_age > 26 * DAY)))
    if due > len(pool):
        raise SystemExit(f"--due {due:,}: only {len(pool):,} customers can be due")
    chosen = rng.choice(pool, due, replace=False)
    reminder, last_chance = np.split(chosen, [round(due * REMINDER_SHARE)])
    step_age[reminder] = uniform(rng, 14 * DAY + MARGIN, 18 * DAY, len(reminder))
    entered[reminder] = step_age[reminder]
    step[last_chance] = 2
    step_age[last_chance] = uniform(rng, 5 * DAY + MARGIN, 9 * DAY, len(last_chance))
    entered[last_chance] = step_age[last_chance] + uniform(
        rng, 14 * DAY, 16 * DAY, len(last_chance)
    )
    intent[chosen] = "due"
    taken[chosen] = True

    # waiting: who ordered in the last 22 days entered after that order, at the reminder
    rest = np.flatnonzero(~taken)
    recent = rest[bought[rest] & (last_age[rest] <= 22 * DAY)]
    high = np.minimum(last_age[recent] - 1, 14 * DAY - MARGIN)
    drawn = uniform(rng, 60, np.maximum(high, 60), len(recent))
    entered[recent] = np.where(high >= 60, drawn, last_age[recent])  # at the order: no exit
    step_age[recent] = entered[recent]
    free = rest[~(bought[rest] & (last_age[rest] <= 22 * DAY))]
    at_reminder = rng.random(len(free)) < REMINDER_SHARE
    waiting_reminder, waiting_last = free[at_reminder], free[~at_reminder]
    step_age[waiting_reminder] = uniform(rng, 60, 14 * DAY - MARGIN, len(waiting_reminder))
    entered[waiting_reminder] = step_age[waiting_reminder]
    step[waiting_last] = 2
    step_age[waiting_last] = uniform(rng, 60, 5 * DAY - MARGIN, len(waiting_last))
    entered[waiting_last] = step_age[waiting_last] + uniform(
        rng, 14 * DAY, 16 * DAY, len(waiting_last)
    )

    share = np.where((intent == "due") & (step == 1), REDEEMED_DUE, REDEEMED_OTHER)
    redeemed = rng.random(n) < share
    # used between the offer (sent as the entry entered) and as_of
    redeemed_age = np.where(redeemed, uniform(rng, 0, np.maximum(entered, 1), n), -1)
    return pd.DataFrame(
        {
            "step": step,
            "entered_age": entered,
            "step_age": step_age,
            "intent": intent,
            "redeemed": redeemed,
            "redeemed_age": redeemed_age.astype(np.int64),
        }
    )


def ledger_text(local: pd.Series, timezone: str) -> list[str | None]:
    """Naive shop-local times as the ledger stores them: naive UTC text, as SQLAlchemy
    writes a ``DateTime`` to SQLite (``2026-11-23 09:00:00.000000``); NaT as None."""
    import numpy as np

    from clvflow.journeys.enter import to_utc

    missing = local.isna().to_numpy()
    utc = to_utc(local.fillna(local.min()), timezone).to_numpy().astype("datetime64[us]")
    text = np.datetime_as_string(utc, unit="us").astype("S26")
    text.view(np.uint8).reshape(-1, 26)[:, 10] = ord(" ")
    values: list[str | None] = text.astype(str).tolist()
    for i in np.flatnonzero(missing):
        values[i] = None
    return values


def insert_rows(con: Connection, table: Table, columns: dict[str, Sequence[Any]]) -> int:
    """Plain ``INSERT`` of ``columns`` (names of ``table``'s columns) through the driver's
    ``executemany``, 200,000 rows at a time."""
    names = list(columns)
    for name in names:
        _ = table.c[name]  # a typo fails here, not as a driver error
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    rows = list(zip(*columns.values(), strict=True))
    for start in range(0, len(rows), 200_000):
        con.exec_driver_sql(sql, rows[start : start + 200_000])
    return len(rows)


def shop_facts(data_dir: Path, as_of: pd.Timestamp) -> tuple[Any, Any, np.ndarray, int]:
    """Customer ids, e-mails, and seconds from each customer's last order to ``as_of`` (-1
    without one); how many customers have orders."""
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    customers = pq.read_table(data_dir / "customers.parquet", columns=["customer_id", "email"])
    ids = customers.column("customer_id").to_numpy(zero_copy_only=False)
    emails = customers.column("email").to_numpy(zero_copy_only=False)
    orders = str(data_dir / "orders.parquet").replace("'", "''")
    with duckdb.connect() as con:
        last = con.execute(
            f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, MAX(placed_at) AS last "
            f"FROM read_parquet('{orders}') WHERE placed_at <= TIMESTAMP '{as_of}' GROUP BY 1"
        ).df()
    last_at = pd.Series(ids).map(last.set_index("customer_id")["last"])
    last_age = (as_of - last_at).dt.total_seconds().fillna(-1).to_numpy().astype(np.int64)
    return ids, emails, last_age, len(last)


def setup_state(args: argparse.Namespace) -> None:
    """Child: write the journey's state into the project's ledger (see the docstring)."""
    import numpy as np
    import pandas as pd

    from clvflow.journeys.catalog import load_journeys
    from clvflow.ledger.store import Ledger
    from clvflow.project.layout import Project

    started = time.perf_counter()
    project = Project.load(args.project)
    check_shape(load_journeys(project.prefect_file)[JOURNEY])
    as_of = pd.Timestamp(args.as_of)
    ids, emails, last_age, buyers = shop_facts(args.data_dir, as_of)
    plan = plan_state(last_age, args.due, args.customers // 20, np.random.default_rng(SEED))
    plan.insert(0, "id", np.arange(1, len(plan) + 1))
    plan.insert(1, "customer_id", ids)
    plan["email"] = emails
    for column in ("entered", "step", "redeemed"):
        ages = pd.to_timedelta(plan[f"{column}_age"].to_numpy(), unit="s")
        plan[f"{column}_at"] = (as_of - ages).astype("datetime64[us]")
    plan["redeemed_at"] = plan["redeemed_at"].where(plan["redeemed"])
    plan["occurrence"] = plan["entered_at"].dt.strftime("%Y-%m-%d")  # the entering run's day
    prepared = time.perf_counter() - started

    ledger = Ledger(project.ledger_url)
    t0 = time.perf_counter()
    with ledger.engine.begin() as con:
        counts = write_state(con, plan, project.config.shop.timezone)
        counts["runs"] = previous_run(con, as_of)
    written = time.perf_counter() - t0
    with ledger.engine.connect() as con:
        con.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    intent = plan[["id", "customer_id", "step", "intent", "redeemed"]]
    intent.to_parquet(args.work / "intent.parquet")
    summary = {
        "prepare_s": prepared,
        "write_s": written,
        "total_s": time.perf_counter() - started,
        "rows": counts,
        "ledger_mb": (project.state_dir / "ledger.db").stat().st_size / 1e6,
        "buyers": buyers,
    }
    (args.work / "setup.json").write_text(json.dumps(summary), "utf-8")


def previous_run(con: Connection, as_of: pd.Timestamp) -> int:
    """The journey's previous run, finished, ``PREVIOUS_RUN`` before ``as_of``: the run at
    ``as_of`` reads only the entries that may have changed since."""
    import pandas as pd

    from clvflow.ledger.journeys import JOURNEY_RUN
    from clvflow.ledger.schema import runs

    then = (as_of - pd.Timedelta(seconds=PREVIOUS_RUN)).to_pydatetime()
    return insert_rows(
        con,
        runs,
        {
            "run_id": ["bench-previous"],
            "campaign": [JOURNEY],
            "occurrence": [JOURNEY_RUN],
            "as_of": [then],
            "dry_run": [0],
            "status": ["finished"],
            "started_at": [then],
            "finished_at": [then],
            "lease_until": [then],
        },
    )


def write_state(con: Connection, plan: pd.DataFrame, tz: str) -> dict[str, int]:
    """The entries, the offers' promo codes, the step messages and some opens and clicks."""
    import numpy as np
    import pandas as pd

    from clvflow.ledger.schema import events, journey_entries, messages, promo_codes

    n = len(plan)
    ids, emails = plan["customer_id"].tolist(), plan["email"].tolist()
    entered, step_at = ledger_text(plan["entered_at"], tz), ledger_text(plan["step_at"], tz)
    counts: dict[str, int] = {}
    counts["journey_entries"] = insert_rows(
        con,
        journey_entries,
        {
            "id": plan["id"].tolist(),
            "journey": [JOURNEY] * n,
            "occurrence": plan["occurrence"].tolist(),
            "customer_id": ids,
            "entered_at": entered,
            "holdout": [0] * n,
            "step": plan["step"].tolist(),
            "step_at": step_at,
            "run_id": [RUN_ID] * n,
        },
    )
    offer = [f"{o}/offer" for o in plan["occurrence"]]
    counts["promo_codes"] = insert_rows(
        con,
        promo_codes,
        {
            "code": [f"BACK{i:08d}" for i in plan["id"]],
            "campaign": [JOURNEY] * n,
            "occurrence": offer,
            "customer_id": ids,
            "discount_percent": [15.0] * n,
            "min_order": [40.0] * n,
            "currency": ["EUR"] * n,
            "expires_at": ledger_text(plan["entered_at"] + pd.Timedelta(days=18), tz),
            "created_at": entered,
            "redeemed_at": ledger_text(plan["redeemed_at"], tz),
        },
    )
    # the offer's message for every entry (sent as it entered), the reminder's for those past it
    past = np.flatnonzero(plan["step"].to_numpy() == 2).tolist()
    occurrence = plan["occurrence"].tolist()
    skipped = (plan["redeemed"] & (plan["redeemed_age"] > plan["step_age"])).to_numpy()[past]
    m = n + len(past)
    counts["messages"] = insert_rows(
        con,
        messages,
        {
            "id": list(range(1, m + 1)),
            "campaign": [JOURNEY] * m,
            "occurrence": offer + [f"{occurrence[i]}/reminder" for i in past],
            "customer_id": ids + [ids[i] for i in past],
            "email": emails + [emails[i] for i in past],
            "kind": ["marketing"] * m,
            "status": ["sent"] * n + np.where(skipped, "skipped", "sent").tolist(),
            "reason": [None] * n + [("unless" if s else None) for s in skipped],
            "template": ["win_back"] * n + ["win_back_reminder"] * len(past),
            "run_id": [RUN_ID] * m,
            "planned_at": entered + [step_at[i] for i in past],
            "finished_at": entered + [step_at[i] for i in past],
        },
    )
    rng = np.random.default_rng(SEED + 1)
    engaged = np.flatnonzero(rng.random(n) < OPENED)  # offers opened, some clicked
    kinds = np.where(rng.random(len(engaged)) < CLICKED / OPENED, "click", "open")
    counts["events"] = insert_rows(
        con,
        events,
        {
            "event_id": [f"bench-{i}" for i in engaged],
            "event": kinds.tolist(),
            "email": [emails[i] for i in engaged],
            "message_id": (engaged + 1).tolist(),
            "campaign": [JOURNEY] * len(engaged),
            "customer_id": [ids[i] for i in engaged],
            "occurred_at": [entered[i] for i in engaged],
            "received_at": [entered[i] for i in engaged],
        },
    )
    return counts


# --- clvflow side --------------------------------------------------------------------------------


class Timers:
    """Seconds spent in wrapped functions, by label (the wrappers are undone on exit)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                result = original(*a, **k)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - t0
                self.calls[label] = self.calls.get(label, 0) + 1
            if hasattr(result, "__len__"):
                self.sizes[label] = len(result)
            return result

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    @contextmanager
    def installed(self) -> Iterator[Timers]:
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()


def run_clvflow(args: argparse.Namespace) -> None:
    """Child: ``decide_now`` ``--repeat`` times, then once with timers on its parts."""
    t0 = time.perf_counter()
    from clvflow.data.sources import ShopData
    from clvflow.journeys import facts as facts_module
    from clvflow.journeys import run as run_module
    from clvflow.journeys.catalog import load_journeys
    from clvflow.ledger import journeys as state
    from clvflow.pipeline.workspace import open_workspace
    from clvflow.project.layout import Project

    import_s, import_rss = time.perf_counter() - t0, max_rss_bytes()
    project = Project.load(args.project)
    t0 = time.perf_counter()
    journey = load_journeys(project.prefect_file)[JOURNEY]
    load_s = time.perf_counter() - t0
    as_of = dt.datetime.fromisoformat(args.as_of)
    runs: list[dict[str, float]] = []
    decisions = None
    for _ in range(args.repeat):
        decisions = None  # let the previous result go before the next run
        t0 = time.perf_counter()
        with open_workspace(project, as_of) as ws:
            opened = time.perf_counter() - t0
            c0, t1 = time.process_time(), time.perf_counter()
            decisions = run_module.decide_now(ws, journey, as_of)
            wall, cpu = time.perf_counter() - t1, time.process_time() - c0
        runs.append({"open": opened, "wall": wall, "cpu": cpu, "rss": max_rss_bytes()})
    assert decisions is not None
    peak, hwm = max_rss_bytes(), hwm_bytes()
    decisions[["id", "step", "decision", "due_at"]].to_parquet(args.work / "clvflow.parquet")
    decisions = None

    timers = Timers()
    timers.wrap(run_module, "read_entries", "read_entries")
    timers.wrap(state, "active", "active")  # read_entries and facts call it as state.active
    timers.wrap(run_module, "to_local", "to_local")
    timers.wrap(run_module, "gather", "gather")
    timers.wrap(ShopData, "frame", "shop_frame")
    timers.wrap(state, "redeemed", "redeemed")
    timers.wrap(state, "engaged", "engaged")
    timers.wrap(run_module, "decide", "decide")
    timers.wrap(facts_module, "where_members", "where_members")
    with timers.installed(), open_workspace(project, as_of) as ws:
        t1 = time.perf_counter()
        run_module.decide_now(ws, journey, as_of)
        profiled = time.perf_counter() - t1
    result = {
        "import_s": import_s,
        "import_rss": import_rss,
        "load_journeys_s": load_s,
        "runs": runs,
        "peak_rss": peak,
        "peak_hwm": hwm,
        "profile_wall": profiled,
        "spent": timers.spent,
        "sizes": timers.sizes,
    }
    (args.work / "clvflow.json").write_text(json.dumps(result), "utf-8")


# --- naive pandas side ---------------------------------------------------------------------------
# The decision as a newcomer writes it from the journey's description in prefect.yaml, with the
# steps typed in by hand (``check_shape`` keeps them equal to the spec).

STEPS: list[dict[str, Any]] = [
    {"name": "offer", "wait_days": 0},
    {"name": "reminder", "wait_days": 14, "unless_redeemed": True},
    {"name": "last-chance", "wait_days": 5, "top_clv_percent": 30},
]


class Laps:
    """Wall time of consecutive phases."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.start = self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self._last
        self._last = now


def naive_decision(
    db: Path, data_dir: Path, timezone: str, as_of: pd.Timestamp, sample: int, laps: Laps
) -> tuple[pd.DataFrame, int]:
    """Every entry's decision (id, step, decision, due_at), or a sample's; and how many
    entries there are."""
    import sqlite3

    import pandas as pd

    con = sqlite3.connect(db)
    entries = pd.read_sql(
        "SELECT id, occurrence, customer_id, entered_at, step, step_at FROM journey_entries "
        "WHERE journey = ? AND exited_at IS NULL",
        con,
        params=(JOURNEY,),
        parse_dates=["entered_at", "step_at"],
    )
    for column in ("entered_at", "step_at"):  # the ledger keeps UTC, the shop local time
        utc = entries[column].dt.tz_localize("UTC")
        entries[column] = utc.dt.tz_convert(timezone).dt.tz_localize(None)
    laps("read entries (read_sql, to local time)")

    orders = pd.read_parquet(
        data_dir / "orders.parquet", columns=["customer_id", "placed_at", "total"]
    )
    orders = orders[orders["placed_at"] <= as_of]
    last_order = orders.groupby("customer_id")["placed_at"].max().rename("last_order_at")
    spent = orders.groupby("customer_id")["total"].sum()
    laps("orders: read, last order and spent per customer")

    ranked = spent.sort_values(ascending=False)
    cut = ranked.iloc[math.ceil(len(ranked) * STEPS[2]["top_clv_percent"] / 100) - 1]
    top_clv = set(spent[spent >= cut].index)
    laps("top 30 % by CLV")

    codes = pd.read_sql(
        "SELECT occurrence, customer_id FROM promo_codes "
        "WHERE campaign = ? AND redeemed_at IS NOT NULL",
        con,
        params=(JOURNEY,),
    )
    con.close()
    redeemed = set()
    for _, code in codes.iterrows():
        redeemed.add((code["occurrence"].rsplit("/", 1)[0], code["customer_id"]))
    laps("redeemed codes")

    df = entries.merge(last_order, left_on="customer_id", right_index=True, how="left")
    df = df[df["step"] < len(STEPS)]
    laps("merge")

    def decide_row(row: pd.Series) -> tuple[str, pd.Timestamp]:
        step = STEPS[row["step"]]
        due_at = row["step_at"] + pd.Timedelta(days=step["wait_days"])
        if pd.notna(row["last_order_at"]) and row["last_order_at"] > row["entered_at"]:
            return "exit", due_at
        if due_at > as_of:
            return "waiting", due_at
        if "top_clv_percent" in step and row["customer_id"] not in top_clv:
            return "where", due_at
        if step.get("unless_redeemed") and (row["occurrence"], row["customer_id"]) in redeemed:
            return "unless", due_at
        return "due", due_at

    total = len(df)
    if 0 < sample < total:
        df = df.sample(sample, random_state=SEED)
    out = df.apply(decide_row, axis=1)
    df["decision"] = [d for d, _ in out]
    df["due_at"] = [d for _, d in out]
    laps("decide per entry (apply)")
    return df[["id", "step", "decision", "due_at"]], total


def run_pandas(args: argparse.Namespace) -> None:
    """Child: the naive decision over every entry (or ``--baseline-sample`` of them, the
    per-entry part's time scaled up to all)."""
    t0 = time.perf_counter()
    import pandas as pd

    import_s, import_rss = time.perf_counter() - t0, max_rss_bytes()
    from clvflow.journeys.catalog import load_journeys
    from clvflow.project.layout import Project

    project = Project.load(args.project)
    check_shape(load_journeys(project.prefect_file)[JOURNEY])  # outside the clock
    c0, laps = time.process_time(), Laps()
    decided, total = naive_decision(
        project.state_dir / "ledger.db",
        args.data_dir,
        project.config.shop.timezone,
        pd.Timestamp(args.as_of),
        args.baseline_sample,
        laps,
    )
    wall, cpu = time.perf_counter() - laps.start, time.process_time() - c0
    scale = total / len(decided)
    scaled = wall + laps.phases["decide per entry (apply)"] * (scale - 1)
    decided.to_parquet(args.work / "pandas.parquet")
    result = {
        "import_s": import_s,
        "import_rss": import_rss,
        "wall": wall,
        "cpu": cpu,
        "scaled_wall": scaled,
        "decided": len(decided),
        "entries": total,
        "phases": laps.phases,
        "peak_rss": max_rss_bytes(),
        "peak_hwm": hwm_bytes(),
    }
    (args.work / "pandas.json").write_text(json.dumps(result), "utf-8")


# --- parent --------------------------------------------------------------------------------------


def child(role: str, args: argparse.Namespace, work: Path, data_dir: Path) -> float:
    """Run ``role`` in a fresh interpreter (its peak RSS its own); its wall time."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        role,
        "--customers",
        str(args.customers),
        "--due",
        str(args.due),
        "--repeat",
        str(args.repeat),
        "--as-of",
        args.as_of,
        "--baseline-sample",
        str(args.baseline_sample),
        "--work",
        str(work),
        "--data-dir",
        str(data_dir),
        "--project",
        str(work / "project"),
    ]
    t0 = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - t0


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(args: argparse.Namespace, work: Path, data_s: float, load: tuple[float, float]) -> None:
    import duckdb
    import pandas as pd

    setup = json.loads((work / "setup.json").read_text("utf-8"))
    ours = json.loads((work / "clvflow.json").read_text("utf-8"))
    theirs = json.loads((work / "pandas.json").read_text("utf-8"))
    engine = pd.read_parquet(work / "clvflow.parquet")
    naive = pd.read_parquet(work / "pandas.parquet")
    intent = pd.read_parquet(work / "intent.parquet")

    print()
    print(
        f"journey {JOURNEY}: {args.customers:,} customers ({setup['buyers']:,} with orders), "
        f"{args.orders:,} orders; as_of {args.as_of} (shop local); {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, duckdb {duckdb.__version__}, pandas "
        f"{pd.__version__}; load average {load[0]:.2f} before, {load[1]:.2f} after"
    )
    rows = ", ".join(f"{k} {v:,}" for k, v in setup["rows"].items())
    print(
        f"setup (outside the figures): data {data_s:.1f} s; journey state {setup['total_s']:.1f} s "
        f"(plan {setup['prepare_s']:.1f} s, ledger writes {setup['write_s']:.1f} s): {rows}; "
        f"ledger file {setup['ledger_mb']:,.0f} MB"
    )
    meant = intent.groupby(["step", "intent"]).size().reset_index(name="n")
    print(
        "state meant: "
        + ", ".join(
            f"{STEPS[int(s)]['name']}/{i} {n:,}" for s, i, n in meant.itertuples(index=False)
        )
        + f"; redeemed codes {int(intent['redeemed'].sum()):,}"
    )
    best, median = report_clvflow(ours)
    naive_wall = report_pandas(theirs)
    report_decisions(engine, naive, intent)
    print()
    scaled = " scaled" if theirs["decided"] < theirs["entries"] else ""
    print(
        f"ratio: pandas / clvflow = {naive_wall / best:.1f}x (wall; clvflow best {best:.2f} s, "
        f"pandas {naive_wall:.2f} s{scaled})"
    )
    print(
        f"target decide_now wall <= {TARGET_SECONDS:.1f} s: {verdict(best <= TARGET_SECONDS)} "
        f"(best {best:.2f} s, median {median:.2f} s)"
    )
    print(
        f"target peak RSS <= {mb(TARGET_RSS_BYTES)}: "
        f"{verdict(ours['peak_rss'] <= TARGET_RSS_BYTES)} ({mb(ours['peak_rss'])})"
    )


def report_clvflow(ours: dict[str, Any]) -> tuple[float, float]:
    """The engine's runs and where its time goes; its best and median wall time."""
    walls = [r["wall"] for r in ours["runs"]]
    best, median = min(walls), statistics.median(walls)

    def seconds(key: str) -> str:
        return "[" + ", ".join(f"{r[key]:.2f}" for r in ours["runs"]) + "]"

    print()
    print(
        f"clvflow decide_now: runs {seconds('wall')} s wall, {seconds('cpu')} s CPU; best "
        f"{best:.2f} s, median {median:.2f} s; opening the workspace {seconds('open')} s "
        "(outside the clock)"
    )
    hwm = "" if ours["peak_hwm"] is None else f", VmHWM {mb(ours['peak_hwm'])}"
    print(
        f"   peak RSS {mb(ours['peak_rss'])}{hwm} (after imports {mb(ours['import_rss'])}); "
        f"imports {ours['import_s']:.2f} s, load_journeys {ours['load_journeys_s']:.2f} s"
    )
    spent, sizes = ours["spent"], ours["sizes"]
    parts = [
        ("ledger: active entries (SQL, frame, ISO parse)", spent.get("active", 0.0)),
        ("ledger: entry times UTC -> local (to_local x2)", spent.get("to_local", 0.0)),
        ("facts: last order per customer (Parquet)", spent.get("shop_frame", 0.0)),
        ("facts: redeemed codes (ledger)", spent.get("redeemed", 0.0)),
        ("facts: opens and clicks (ledger)", spent.get("engaged", 0.0)),
        ("decide: where = top 30 % CLV segment", spent.get("where_members", 0.0)),
        (
            "decide: the two DuckDB queries and their frames",
            spent.get("decide", 0.0) - spent.get("where_members", 0.0),
        ),
    ]
    other = ours["profile_wall"] - sum(v for _, v in parts)
    print(f"   where the time goes (one more call, timed by part: {ours['profile_wall']:.2f} s)")
    for label, value in [*parts, ("other (segment catalog, the rest)", other)]:
        print(f"     {label:<50} {value:6.2f} s")
    print(
        f"     sizes: {sizes.get('active', 0):,} entries, {sizes.get('shop_frame', 0):,} last "
        f"orders, {sizes.get('redeemed', 0):,} redeemed, {sizes.get('engaged', 0):,} "
        f"opens/clicks, {sizes.get('where_members', 0):,} in the top 30 %"
    )
    return best, median


def report_pandas(theirs: dict[str, Any]) -> float:
    """The baseline's figures; its wall time (scaled up when apply() saw a sample)."""
    print()
    how = ""
    if theirs["decided"] < theirs["entries"]:
        how = (
            f" (apply() on a sample of {theirs['decided']:,} of {theirs['entries']:,} entries, "
            f"its time scaled x{theirs['entries'] / theirs['decided']:.1f}; measured "
            f"{theirs['wall']:.2f} s)"
        )
    print(f"pandas baseline: {theirs['scaled_wall']:.2f} s wall{how}, {theirs['cpu']:.2f} s CPU")
    for label, value in theirs["phases"].items():
        print(f"     {label:<50} {value:6.2f} s")
    print(f"   peak RSS {mb(theirs['peak_rss'])} (after imports {mb(theirs['import_rss'])})")
    wall: float = theirs["scaled_wall"]
    return wall


def report_decisions(engine: pd.DataFrame, naive: pd.DataFrame, intent: pd.DataFrame) -> None:
    """Counts by (step, decision) of both sides; entry-by-entry agreement, and with the
    state the setup meant."""
    print()
    print(f"{'step':<12} {'decision':<10} {'clvflow':>10} {'pandas':>10}")
    ours_n = engine.groupby(["step", "decision"]).size()
    theirs_n = naive.groupby(["step", "decision"]).size()
    for step, decision in sorted(set(ours_n.index) | set(theirs_n.index)):
        a, b = ours_n.get((step, decision), 0), theirs_n.get((step, decision), 0)
        print(f"{STEPS[int(step)]['name']:<12} {decision:<10} {a:>10,} {b:>10,}")
    print(f"{'all':<12} {'':<10} {len(engine):>10,} {len(naive):>10,}")

    print()
    both = naive.merge(engine, on="id", how="inner", suffixes=("_pandas", "_clvflow"))
    same = (both["decision_pandas"] == both["decision_clvflow"]) & (
        both["step_pandas"] == both["step_clvflow"]
    )
    due_same = both["due_at_pandas"] == both["due_at_clvflow"]
    print(
        f"clvflow vs pandas on the {len(both):,} entries clvflow read (the others wait): "
        f"{int(same.sum()):,} agree, {int((~same).sum()):,} disagree; due_at equal for "
        f"{int(due_same.sum()):,}"
    )
    unread = naive[~naive["id"].isin(engine["id"])]
    missed = unread[unread["decision"] != "waiting"]
    print(
        f"entries clvflow did not read: {len(unread):,}, of which pandas decides "
        f"{len(missed):,} other than 'waiting'"
    )
    if (~same).any():
        wrong = both[~same]
        pairs = wrong.groupby(["decision_clvflow", "decision_pandas"], dropna=False).size()
        print("   disagreements (clvflow, pandas): " + str(pairs.to_dict()))
        print("   e.g. entry ids " + ", ".join(str(i) for i in wrong["id"].head(5)))
    meant = engine.merge(intent, on="id", how="right", suffixes=("", "_meant"))
    meant["decision"] = meant["decision"].fillna("waiting")  # not read: waiting
    meant["step"] = meant["step"].fillna(meant["step_meant"])
    by_time = meant["decision"].where(meant["decision"].isin(["exit", "waiting"]), "due")
    fits = (by_time == meant["intent"]) & (meant["step"] == meant["step_meant"])
    first = meant[(meant["intent"] == "due") & (meant["step_meant"] == 1)]
    unless = (first["decision"] == "unless") == first["redeemed"]
    print(
        f"clvflow vs the state set up: step and exit/waiting/due by time as meant for "
        f"{int(fits.sum()):,} of {len(meant):,} entries; 'unless' exactly where a redeemed "
        f"code was set up for {int(unless.sum()):,} of {len(first):,} due for the reminder"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=1_000_000, help="one entry each")
    parser.add_argument("--due", type=int, default=100_000, help="entries due at --as-of")
    parser.add_argument("--repeat", type=int, default=3, help="calls of decide_now")
    parser.add_argument(
        "--as-of",
        default=DEFAULT_AS_OF,
        help="the decision's instant, naive shop-local (the data ends the night before)",
    )
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=0,
        help="pandas: apply() on this many entries, its time scaled (0: every entry)",
    )
    parser.add_argument("--regenerate", action="store_true", help="regenerate the cached data")
    parser.add_argument("--keep", type=Path, help="keep the project folder and results here")
    # Internal: run one side in this process.
    parser.add_argument("--child", choices=["setup", "clvflow", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not 0 < args.due <= args.customers:
        parser.error("--due must be between 1 and --customers")
    as_of = dt.datetime.fromisoformat(args.as_of)
    args.as_of = as_of.isoformat(sep=" ")
    # bench/segments.py's cache: the data's reference day is as_of's day
    args.orders = args.customers * 10
    args.reference = as_of.date().isoformat()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        {"setup": setup_state, "clvflow": run_clvflow, "pandas": run_pandas}[args.child](args)
        return
    t0 = time.perf_counter()
    data_dir = ensure_data(args)
    data_s = time.perf_counter() - t0
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="clvflow-journey-") as tmp:
        work = args.keep or Path(tmp)
        if args.keep:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        build_project(data_dir, work / "project")
        print(f"setup: journey state for {args.customers:,} customers ...", flush=True)
        child("setup", args, work, data_dir)
        print(f"running clvflow decide_now ({args.repeat}x) ...", flush=True)
        child("clvflow", args, work, data_dir)
        print("running the pandas baseline ...", flush=True)
        child("pandas", args, work, data_dir)
        after = os.getloadavg()[0]
        report(args, work, data_s, (before, after))


if __name__ == "__main__":
    main()
