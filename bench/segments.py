"""Benchmark: every shipped segment over a large demo shop stored as Parquet.

Measures, in one run and each side in its own child process:

- clvflow: from ``open_shop_data`` through compiling every segment in ``segments/*.yaml``
  together (``SharedFacts``: one facts table, built from the Parquet files) and evaluating
  each to a Python list of member ids;
- with ``--alone``, also clvflow's one-segment path (``member_ids(compile_segment(...))``,
  one self-contained query per segment, as ``clvflow segments members`` runs it);
- a naive pandas baseline: ``pd.read_parquet`` of the files it needs, then each segment
  written plainly with groupby / merge / filter, the way an analyst would in a notebook.

Both sides report wall time (best of ``--repeat``), peak RSS (``ru_maxrss`` of the child) and
the RSS right after the imports; the member sets of the two sides must be equal. The demo
data is generated once into ``bench/.data/<customers>x<orders>/`` and reused.

    .venv/bin/python bench/segments.py                      # 1,000,000 customers, 10,000,000 orders
    .venv/bin/python bench/segments.py --customers 50000 --orders 500000 --repeat 3
    .venv/bin/python bench/segments.py --alone      # also time one query per segment
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_ROOT = BENCH_DIR / ".data"
TABLES = ("customers", "orders", "order_items", "products")
SEED = 7
PRODUCTS = 60
DEFAULT_REFERENCE = dt.date(2026, 11, 23)
AS_OF_TIME = dt.time(10, 0)

TARGET_SECONDS = 3.0
TARGET_RSS_BYTES = 1_500_000_000  # 1.5 GB (decimal)
TARGET_SPEEDUP = 2.0


# --- data ------------------------------------------------------------------------------------


def ensure_data(args: argparse.Namespace) -> Path:
    """The cached Parquet shop for this size, generated when missing, stale or asked for.

    Generation runs in a child process: the parent stays small, because a child started
    from it inherits its peak RSS (Linux keeps ``ru_maxrss`` across ``exec``).
    """
    out = DATA_ROOT / f"{args.customers}x{args.orders}"
    key = {
        "reference": args.reference,
        "seed": SEED,
        "customers": args.customers,
        "orders": args.orders,
        "products": PRODUCTS,
        "format": "parquet",
    }
    manifest = out / "manifest.json"
    files = [out / f"{t}.parquet" for t in TABLES]
    if not args.regenerate and manifest.is_file() and all(f.is_file() for f in files):
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} == key:
            print(f"data: reusing {out} ({saved.get('items', 0):,} order items)")
            return out
    shutil.rmtree(out, ignore_errors=True)
    print(f"data: generating {args.customers:,} customers / {args.orders:,} orders into {out} ...")
    start = time.perf_counter()
    command = [*child_command("generate", args), "--data-dir", str(out)]
    subprocess.run(command, check=True)
    n_items = int((out / "items.txt").read_text(encoding="utf-8"))
    (out / "items.txt").unlink()
    # The manifest is written last, so an interrupted generation is redone next time.
    manifest.write_text(json.dumps({**key, "items": n_items}, indent=2) + "\n", "utf-8")
    size = sum(f.stat().st_size for f in files)
    print(f"data: generated in {time.perf_counter() - start:.1f} s, {size / 1e6:,.0f} MB")
    return out


def generate(args: argparse.Namespace) -> None:
    """Child: write the shop's Parquet files into ``--data-dir``."""
    from clvflow.demo.shop import ShopSize, generate_shop

    shop = generate_shop(
        args.data_dir,
        reference=dt.date.fromisoformat(args.reference),
        seed=SEED,
        size=ShopSize(customers=args.customers, orders=args.orders, products=PRODUCTS),
        fmt="parquet",
    )
    (args.data_dir / "items.txt").write_text(str(shop.n_items), encoding="utf-8")


def build_project(data_dir: Path, into: Path) -> None:
    """A project folder: the repo's segments and clvflow.yaml, with data: made absolute."""
    import yaml

    config = yaml.safe_load((REPO / "clvflow.yaml").read_text(encoding="utf-8"))
    config["data"] = {t: str(data_dir / f"{t}.parquet") for t in TABLES}
    shutil.copytree(REPO / "segments", into / "segments")
    (into / "clvflow.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")


# --- results passed from a child to the parent -------------------------------------------------


@dataclass
class Run:
    """One evaluation of every segment."""

    wall: float  # seconds
    cpu: float  # CPU seconds, user + system, all threads
    setup: float  # open data + facts (clvflow) / read files + customer facts (pandas)
    per_segment: dict[str, float]
    members: dict[str, list[str]]


@dataclass
class SideResult:
    """What one side measured; pickled by the child, read by the parent."""

    side: str
    import_s: float
    import_rss: int  # bytes, after the imports
    peak_rss: int  # bytes, ru_maxrss at the end of the child
    peak_hwm: int | None  # bytes, VmHWM of /proc/self/status: a cross-check of peak_rss
    runs: list[Run]
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.wall)

    @property
    def members(self) -> dict[str, list[str]]:
        return self.runs[-1].members

    @property
    def stable(self) -> bool:
        """The same members in every repeat."""
        return all(r.members == self.members for r in self.runs)


Setup = Callable[[], object]
Evaluate = Callable[[object, str], list[str]]


def measure(repeat: int, names: list[str], setup: Setup, evaluate: Evaluate) -> list[Run]:
    """``repeat`` times: ``setup()``, then ``evaluate(state, name)`` for every segment."""
    runs: list[Run] = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        state = setup()
        ready = time.perf_counter() - t0
        per: dict[str, float] = {}
        members: dict[str, list[str]] = {}
        for name in names:
            t = time.perf_counter()
            members[name] = evaluate(state, name)
            per[name] = time.perf_counter() - t
        for closing in (state, getattr(state, "data", None)):  # SharedFacts, then its data
            close = getattr(closing, "close", None)
            if callable(close):
                close()
        del state
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.append(Run(wall, cpu, ready, per, members))
    return runs


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def hwm_bytes() -> int | None:
    """Linux's own peak RSS of this process image (``VmHWM``), or None elsewhere."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


# --- clvflow side ------------------------------------------------------------------------------


def run_clvflow(project_dir: Path, as_of: dt.datetime, repeat: int, alone: bool) -> SideResult:
    """clvflow as a run evaluates a project's segments (``alone``: one query each)."""
    start = time.perf_counter()
    from clvflow.data.sources import ShopData, open_shop_data
    from clvflow.project.layout import Project
    from clvflow.segments.catalog import SegmentCatalog, compile_segment
    from clvflow.segments.evaluation import SharedFacts
    from clvflow.segments.members import member_ids

    import_s = time.perf_counter() - start
    import_rss = max_rss_bytes()
    project = Project.load(project_dir)
    catalog = SegmentCatalog.load(project.segments_dir)
    names = catalog.names()

    if alone:

        def evaluate_alone(data: object, name: str) -> list[str]:
            assert isinstance(data, ShopData)
            return member_ids(data, compile_segment(catalog, name, data, as_of))

        runs = measure(repeat, names, lambda: open_shop_data(project), evaluate_alone)
        side = "alone"
    else:

        def setup() -> SharedFacts:
            shared = SharedFacts(catalog, names, open_shop_data(project), as_of)
            shared.build()  # reads the files: one pass for the facts, one for orders x items
            return shared

        def evaluate(shared: object, name: str) -> list[str]:
            assert isinstance(shared, SharedFacts)
            return shared.member_ids(name)

        runs = measure(repeat, names, setup, evaluate)
        side = "clvflow"
    return SideResult(side, import_s, import_rss, max_rss_bytes(), hwm_bytes(), runs)


# --- naive pandas side -------------------------------------------------------------------------
# Each shipped segment, written the way an analyst would with pandas, following the YAML files
# and the contract in DESIGN.md "Segments". A segment returns a boolean mask over the customers.


@dataclass
class Shop:
    """Customers with their order facts, plus the raw tables the segments need."""

    cf: pd.DataFrame  # customers + orders_count, total_spent, first/last_order_at
    orders: pd.DataFrame
    items: pd.DataFrame
    products: pd.DataFrame
    as_of: pd.Timestamp


def load_shop(data_dir: Path, as_of: dt.datetime) -> Shop:
    import pandas as pd

    now = pd.Timestamp(as_of)
    customers = pd.read_parquet(
        data_dir / "customers.parquet",
        columns=["customer_id", "role", "wedding_date", "loyalty_points", "points_expire_at"],
    )
    orders = pd.read_parquet(
        data_dir / "orders.parquet", columns=["order_id", "customer_id", "placed_at", "total"]
    )
    items = pd.read_parquet(data_dir / "order_items.parquet", columns=["order_id", "product_id"])
    products = pd.read_parquet(data_dir / "products.parquet", columns=["product_id", "category"])
    customers["wedding_date"] = pd.to_datetime(customers["wedding_date"])
    customers["points_expire_at"] = pd.to_datetime(customers["points_expire_at"])

    orders = orders[orders["placed_at"] <= now]
    facts = (
        orders.groupby("customer_id")
        .agg(
            orders_count=("order_id", "count"),
            total_spent=("total", "sum"),
            first_order_at=("placed_at", "min"),
            last_order_at=("placed_at", "max"),
        )
        .reset_index()
    )
    cf = customers.merge(facts, on="customer_id", how="left")
    cf["orders_count"] = cf["orders_count"].fillna(0)
    cf["total_spent"] = cf["total_spent"].fillna(0.0)
    return Shop(cf, orders, items, products, now)


def months(n: int) -> pd.DateOffset:
    import pandas as pd

    return pd.DateOffset(months=n)


def day(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.normalize()


def bought(shop: Shop, category: str, since: pd.Timestamp) -> pd.Series:
    """Customers with an order placed in [since, as_of] having an item of ``category``."""
    wanted = shop.products.loc[shop.products["category"] == category, ["product_id"]]
    recent = shop.orders[
        (shop.orders["placed_at"] >= since) & (shop.orders["placed_at"] <= shop.as_of)
    ]
    lines = shop.items.merge(wanted, on="product_id").merge(
        recent[["order_id", "customer_id"]], on="order_id"
    )
    return shop.cf["customer_id"].isin(lines["customer_id"].unique())


def top_spenders(shop: Shop) -> pd.Series:
    cf = shop.cf
    values = cf["total_spent"].dropna().sort_values(ascending=False)
    position = math.ceil(len(values) * 5.0 / 100.0)
    threshold = float(values.iloc[position - 1])
    return (cf["total_spent"] >= threshold) & (cf["orders_count"] >= 2)


def lapsed(shop: Shop) -> pd.Series:
    import pandas as pd

    cf = shop.cf
    cutoff = shop.as_of - pd.Timedelta(days=90)
    return (cf["orders_count"] >= 2) & (cf["last_order_at"] < cutoff) & ~top_spenders(shop)


def feedback_due(shop: Shop) -> pd.Series:
    import pandas as pd

    last = shop.cf["last_order_at"]
    low, high = shop.as_of - pd.Timedelta(days=17), shop.as_of - pd.Timedelta(days=10)
    return (last >= low) & (last < high)


def new_buyers(shop: Shop) -> pd.Series:
    import pandas as pd

    cf = shop.cf
    since = shop.as_of - pd.Timedelta(days=7)
    first = cf["first_order_at"]
    return (cf["orders_count"] == 1) & (first >= since) & (first <= shop.as_of)


def points_expiry(shop: Shop) -> pd.Series:
    import pandas as pd

    cf = shop.cf
    expires = cf["points_expire_at"]
    until = day(shop.as_of + pd.Timedelta(days=30))
    return (cf["loyalty_points"] >= 100) & (expires >= day(shop.as_of)) & (expires <= until)


def wedding_party(shop: Shop) -> pd.Series:
    cf = shop.cf
    return cf["role"].isin(["couple", "bridesmaid"]) & cf["wedding_date"].notna()


def wedding_day_of(shop: Shop) -> pd.Series:
    import pandas as pd

    wedding = shop.cf["wedding_date"]
    until = day(shop.as_of + pd.Timedelta(weeks=4))
    return wedding_party(shop) & (wedding >= day(shop.as_of)) & (wedding <= until)


def wedding_invitations(shop: Shop) -> pd.Series:
    wedding = shop.cf["wedding_date"]
    low, high = day(shop.as_of + months(2)), day(shop.as_of + months(4))
    recent = bought(shop, "invitations", shop.as_of - months(6))
    return wedding_party(shop) & (wedding >= low) & (wedding < high) & ~recent


def wedding_save_the_dates(shop: Shop) -> pd.Series:
    wedding = shop.cf["wedding_date"]
    low, high = day(shop.as_of + months(8)), day(shop.as_of + months(12))
    recent = bought(shop, "save-the-dates", shop.as_of - months(12))
    return wedding_party(shop) & (wedding >= low) & (wedding < high) & ~recent


def wedding_thank_you_cards(shop: Shop) -> pd.Series:
    import pandas as pd

    wedding = shop.cf["wedding_date"]
    six_weeks_ago = shop.as_of - pd.Timedelta(weeks=6)
    recent = bought(shop, "thank-you-cards", six_weeks_ago)
    in_window = (wedding >= day(six_weeks_ago)) & (wedding <= day(shop.as_of))
    return wedding_party(shop) & in_window & ~recent


BASELINE: dict[str, Callable[[Shop], pd.Series]] = {
    "feedback_due": feedback_due,
    "lapsed": lapsed,
    "new_buyers": new_buyers,
    "points_expiry": points_expiry,
    "top_spenders": top_spenders,
    "wedding_day_of": wedding_day_of,
    "wedding_invitations": wedding_invitations,
    "wedding_party": wedding_party,
    "wedding_save_the_dates": wedding_save_the_dates,
    "wedding_thank_you_cards": wedding_thank_you_cards,
}


def run_pandas(data_dir: Path, as_of: dt.datetime, names: list[str], repeat: int) -> SideResult:
    start = time.perf_counter()
    import pandas  # noqa: F401  (only to time the import; load_shop imports it again)

    import_s = time.perf_counter() - start
    import_rss = max_rss_bytes()
    notes = [f"no pandas baseline for segment '{n}'" for n in names if n not in BASELINE]

    def evaluate(shop: object, name: str) -> list[str]:
        assert isinstance(shop, Shop)
        mask = BASELINE[name](shop)
        return sorted(shop.cf.loc[mask, "customer_id"].tolist())

    known = [n for n in names if n in BASELINE]
    runs = measure(repeat, known, lambda: load_shop(data_dir, as_of), evaluate)
    peak = max_rss_bytes()
    return SideResult("pandas", import_s, import_rss, peak, hwm_bytes(), runs, notes)


# --- parent: run both children and report ------------------------------------------------------


def child_command(role: str, args: argparse.Namespace) -> list[str]:
    """This script run in a fresh interpreter as a child doing ``role``."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        role,
        "--customers",
        str(args.customers),
        "--orders",
        str(args.orders),
        "--reference",
        args.reference,
        "--repeat",
        str(args.repeat),
    ]


def run_child(side: str, args: argparse.Namespace, data_dir: Path, work: Path) -> Path:
    """Run one side in its own interpreter; return the file holding its pickled result."""
    out = work / f"{side}.pickle"
    command = [
        *child_command(side, args),
        "--data-dir",
        str(data_dir),
        "--project",
        str(work / "project"),
        "--result",
        str(out),
    ]
    print(f"running {side} ({args.repeat}x) ...", flush=True)
    subprocess.run(command, check=True)
    return out


def read_result(path: Path) -> SideResult:
    with path.open("rb") as fh:
        result: SideResult = pickle.load(fh)
    return result


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def compare(names: list[str], ours: SideResult, theirs: SideResult) -> list[str]:
    problems: list[str] = []
    for name in names:
        if name not in theirs.members:
            problems.append(f"{name}: no baseline")
            continue
        a, b = set(ours.members[name]), set(theirs.members[name])
        if a != b:
            only_a, only_b = sorted(a - b), sorted(b - a)
            problems.append(
                f"{name}: clvflow {len(a):,} vs pandas {len(b):,}; only clvflow {len(only_a)} "
                f"{only_a[:5]}, only pandas {len(only_b)} {only_b[:5]}"
            )
    return problems


def report(
    args: argparse.Namespace,
    ours: SideResult,
    theirs: SideResult,
    alone: SideResult | None,
    load: tuple[float, float],
) -> None:
    names = sorted(ours.members)
    a, b = ours.best, theirs.best
    c = alone.best if alone is not None else None
    setup = "open data + facts / read + facts"
    width = max(len(n) for n in [*names, setup, "total (CPU, all threads)"])
    columns = ["segment", "members", "clvflow ms", "pandas ms"]
    if c is not None:
        columns.append("alone ms")
    line = f"{{:<{width}}}" + "".join("  {:>12}" for _ in columns[1:])

    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1000:,.0f}"

    def row(label: str, count: str, *values: float | None) -> None:
        print(line.format(label, count, *(ms(v) for v in values[: len(columns) - 2])))

    print()
    print(
        f"{args.customers:,} customers, {args.orders:,} orders; as_of {args.as_of}; "
        f"best of {args.repeat}; {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"load average {load[0]:.2f} before the run, {load[1]:.2f} after"
    )
    print(line.format(*columns))
    print(line.format("-" * width, *(["-" * 12] * (len(columns) - 1))))
    row(setup, "", a.setup, b.setup, c.setup if c else None)
    for name in names:
        count = f"{len(ours.members[name]):,}"
        row(
            name,
            count,
            a.per_segment[name],
            b.per_segment.get(name),
            c.per_segment[name] if c else None,
        )
    row("total (wall)", "", a.wall, b.wall, c.wall if c else None)
    row("total (CPU, all threads)", "", a.cpu, b.cpu, c.cpu if c else None)
    print()
    sides = [ours, theirs] + ([alone] if alone is not None else [])
    for side in sides:
        walls = ", ".join(f"{r.wall:.2f}" for r in side.runs)
        cpus = ", ".join(f"{r.cpu:.2f}" for r in side.runs)
        cores = ", ".join(f"{r.cpu / r.wall:.2f}" for r in side.runs)
        hwm = "" if side.peak_hwm is None else f", VmHWM {mb(side.peak_hwm)}"
        print(
            f"{side.side:>8}: peak RSS {mb(side.peak_rss)}{hwm} (after imports "
            f"{mb(side.import_rss)}, so {mb(side.peak_rss - side.import_rss)} for the work); "
            f"imports {side.import_s:.2f} s; runs [{walls}] s wall, [{cpus}] s CPU, "
            f"[{cores}] cores used (CPU / wall)"
        )
    least_cpu = min(r.cpu for r in ours.runs)
    print(
        f"   clvflow with both cores free needs at least {least_cpu / 2:.2f} s wall "
        f"(its least CPU / 2; a bound, not a measurement)"
    )
    speedup = b.wall / a.wall
    print(f"   ratio: pandas / clvflow = {speedup:.2f}x (wall), {b.cpu / a.cpu:.2f}x (CPU)")
    if c is not None:
        print(
            f"   ratio: alone / clvflow = {c.wall / a.wall:.2f}x (wall), {c.cpu / a.cpu:.2f}x (CPU)"
        )
    problems = compare(names, ours, theirs) + ours.notes + theirs.notes
    if alone is not None:
        problems += [f"alone: {p}" for p in compare(names, ours, alone)]
    problems += [f"{s.side}: members differ between repeats" for s in sides if not s.stable]
    print("members agree" if not problems else "members DIFFER:\n  " + "\n  ".join(problems))
    print()
    print(
        f"target clvflow wall <= {TARGET_SECONDS:.1f} s: {verdict(a.wall <= TARGET_SECONDS)} "
        f"({a.wall:.2f} s)"
    )
    print(
        f"target clvflow peak RSS <= {mb(TARGET_RSS_BYTES)}: "
        f"{verdict(ours.peak_rss <= TARGET_RSS_BYTES)} ({mb(ours.peak_rss)})"
    )
    print(
        f"target clvflow >= {TARGET_SPEEDUP:.0f}x faster than pandas: "
        f"{verdict(speedup >= TARGET_SPEEDUP)} ({speedup:.2f}x)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="report the best of N runs")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the cached data")
    parser.add_argument(
        "--alone",
        action="store_true",
        help="also time clvflow's one-query-per-segment path (as `segments members` runs)",
    )
    parser.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE.isoformat(),
        help="the data's reference day (as_of is that day at 10:00)",
    )
    # Internal: run one side in this process and pickle the result.
    parser.add_argument(
        "--child", choices=["generate", "clvflow", "alone", "pandas"], help=argparse.SUPPRESS
    )
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    reference = dt.date.fromisoformat(args.reference)
    args.as_of = dt.datetime.combine(reference, AS_OF_TIME)
    return args


def child(args: argparse.Namespace) -> None:
    if args.child == "generate":
        generate(args)
        return
    if args.child in ("clvflow", "alone"):
        result = run_clvflow(args.project, args.as_of, args.repeat, args.child == "alone")
    else:
        names = sorted(p.stem for p in (args.project / "segments").glob("*.yaml"))
        result = run_pandas(args.data_dir, args.as_of, names, args.repeat)
    with args.result.open("wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    data_dir = ensure_data(args)
    before = os.getloadavg()[0]  # other work on the machine slows both sides down
    with tempfile.TemporaryDirectory(prefix="clvflow-bench-") as tmp:
        work = Path(tmp)
        build_project(data_dir, work / "project")
        # All children run before the parent loads any result: a child starts with the
        # parent's peak RSS, and the member lists would inflate it.
        sides = ["clvflow", "pandas"] + (["alone"] if args.alone else [])
        paths = [run_child(side, args, data_dir, work) for side in sides]
        results = [read_result(p) for p in paths]
    after = os.getloadavg()[0]
    alone = results[2] if args.alone else None
    report(args, results[0], results[1], alone, (before, after))


if __name__ == "__main__":
    main()
