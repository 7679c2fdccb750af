"""Benchmark: predicted CLV over a large demo shop stored as Parquet.

Measures, in a child process of its own (so that its peak RSS is its own):

- summary: the models' inputs computed by DuckDB from the Parquet orders
  (``read_summary``);
- fit: BG/NBD on every customer with an order and Gamma-Gamma on the repeat buyers (no
  kept fit: ``cache_dir`` is None);
- score: every customer's p_alive, predicted_orders, expected_order_value, predicted_clv;
- segment: the predictions as a relation in DuckDB and the top 5 % by predicted CLV
  evaluated on it (``predicted_vips``), i.e. what a run adds when a segment reads them.

A naive baseline in a second child: the same summary with pandas (``read_parquet`` and
``groupby``), the way an analyst would compute it before fitting. Both print wall time and
peak RSS; the summaries must agree. The data (the demo generator at this size) is
generated once into ``bench/.data/`` by ``bench/segments.py``'s generator and reused.

    .venv/bin/python bench/predict.py                # 1,000,000 customers, 10,000,000 orders
    .venv/bin/python bench/predict.py --customers 100000 --orders 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import segments as shop_bench  # noqa: E402  (bench/segments.py: data generation)

TARGET_SECONDS = 15.0
TARGET_RSS_BYTES = 1_000_000_000  # 1 GB (decimal)


def peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run_clvflow(project_dir: Path, as_of: dt.datetime) -> dict[str, object]:
    """Child: summary → fit → score → the top 5 % by predicted CLV, each timed."""
    from clvflow.data.sources import open_shop_data
    from clvflow.predictions.fit import fit_models
    from clvflow.predictions.scores import score
    from clvflow.predictions.summary import read_summary
    from clvflow.project.layout import Project
    from clvflow.segments.catalog import SegmentCatalog, compile_segment
    from clvflow.segments.members import member_ids

    project = Project.load(project_dir)
    times: dict[str, float] = {}
    start = time.perf_counter()
    data = open_shop_data(project)
    mark = time.perf_counter()
    summary = read_summary(data, as_of)
    times["summary"] = time.perf_counter() - mark
    mark = time.perf_counter()
    fitted = fit_models(summary, None)
    times["fit"] = time.perf_counter() - mark
    mark = time.perf_counter()
    scores = score(fitted, summary, data.prediction_horizon_days)
    times["score"] = time.perf_counter() - mark
    after_score = time.perf_counter() - start
    rss_after_score = peak_rss()
    mark = time.perf_counter()
    data.cache_dir = None  # the segment fits again, as a first run of the day would
    catalog = SegmentCatalog.load(project.segments_dir)
    vips = member_ids(data, compile_segment(catalog, "predicted_vips", data, as_of))
    times["segment (fit again + relation + query)"] = time.perf_counter() - mark
    data.close()
    params = fitted.purchases.params
    return {
        "times": times,
        "summary_to_scores": after_score,
        "wall": time.perf_counter() - start,
        "rss": rss_after_score,
        "rss_total": peak_rss(),
        "customers": len(summary),
        "repeat_buyers": int((summary.frequency > 0).sum()),
        "bgnbd": [params.r, params.alpha, params.a, params.b],
        "gamma_gamma": None
        if fitted.spend is None
        else [fitted.spend.params.p, fitted.spend.params.q, fitted.spend.params.gamma],
        "mean_clv": float(scores["predicted_clv"].mean()),
        "vips": len(vips),
        "frequency_sum": float(summary.frequency.sum()),
        "age_sum": float(summary.age.sum()),
    }


def run_pandas(data_dir: Path, as_of: dt.datetime) -> dict[str, object]:
    """Child: the same summary with pandas."""
    import pandas as pd

    start = time.perf_counter()
    customers = pd.read_parquet(data_dir / "customers.parquet", columns=["customer_id"])
    orders = pd.read_parquet(
        data_dir / "orders.parquet", columns=["customer_id", "placed_at", "total"]
    )
    orders = orders[
        (orders["placed_at"] <= pd.Timestamp(as_of))
        & orders["customer_id"].isin(customers["customer_id"])
    ]
    orders = orders.assign(day=orders["placed_at"].dt.normalize())
    days = orders.groupby(["customer_id", "day"], as_index=False)["total"].sum()
    per = days.groupby("customer_id")["day"].agg(["size", "min", "max"])
    frequency = per["size"] - 1
    age = (pd.Timestamp(as_of.date()) - per["min"]).dt.days
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "rss": peak_rss(),
        "customers": len(per),
        "frequency_sum": float(frequency.sum()),
        "age_sum": float(age.sum()),
    }


def child(args: argparse.Namespace) -> None:
    as_of = dt.datetime.combine(dt.date.fromisoformat(args.reference), shop_bench.AS_OF_TIME)
    if args.child == "clvflow":
        result = run_clvflow(Path(args.project), as_of)
    else:
        result = run_pandas(Path(args.data_dir), as_of)
    Path(args.result).write_text(json.dumps(result))


def spawn(role: str, args: argparse.Namespace, data_dir: Path, work: Path) -> dict[str, object]:
    out = work / f"{role}.json"
    command = [
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
        "--data-dir",
        str(data_dir),
        "--project",
        str(work / "project"),
        "--result",
        str(out),
    ]
    print(f"running {role} ...", flush=True)
    subprocess.run(command, check=True)
    result: dict[str, object] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--reference", default=shop_bench.DEFAULT_REFERENCE.isoformat())
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)  # used by the shared generator
    parser.add_argument("--child", choices=("clvflow", "pandas"))
    parser.add_argument("--data-dir")
    parser.add_argument("--project")
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    data_dir = shop_bench.ensure_data(args)
    with tempfile.TemporaryDirectory(prefix="clvflow-bench-predict-") as tmp:
        work = Path(tmp)
        shop_bench.build_project(data_dir, work / "project")
        ours = spawn("clvflow", args, data_dir, work)
        theirs = spawn("pandas", args, data_dir, work)
    same = all(ours[k] == theirs[k] for k in ("customers", "frequency_sum", "age_sum"))
    print()
    print(
        f"{args.customers:,} customers, {args.orders:,} orders; "
        f"{ours['customers']:,} with orders, {ours['repeat_buyers']:,} repeat buyers"
    )
    times = ours["times"]
    assert isinstance(times, dict)
    for stage, seconds in times.items():
        print(f"  {stage:<40} {seconds:7.2f} s")
    wall, rss = float(ours["summary_to_scores"]), int(ours["rss"])  # type: ignore[arg-type]
    print(f"  {'open + summary + both fits + scores':<40} {wall:7.2f} s")
    print(f"  {'whole child (incl. the segment)':<40} {float(ours['wall']):7.2f} s")  # type: ignore[arg-type]
    print(
        f"  peak RSS {rss / 1e6:,.0f} MB through the scores, "
        f"{int(ours['rss_total']) / 1e6:,.0f} MB with the segment"
    )  # type: ignore[arg-type]
    pandas_wall = float(theirs["wall"])  # type: ignore[arg-type]
    summary_wall = float(times["summary"])
    print(
        f"  summary: DuckDB {summary_wall:.2f} s vs pandas {pandas_wall:.2f} s "
        f"({pandas_wall / summary_wall:.1f}x), pandas peak RSS {int(theirs['rss']) / 1e6:,.0f} MB"
    )  # type: ignore[arg-type]
    print(
        f"  BG/NBD r, alpha (days), a, b = {ours['bgnbd']}; Gamma-Gamma p, q, gamma = "
        f"{ours['gamma_gamma']}; mean predicted CLV {float(ours['mean_clv']):.2f}; "  # type: ignore[arg-type]
        f"predicted_vips {ours['vips']:,}"
    )
    print(f"  summaries agree with pandas: {same}")
    ok = wall <= TARGET_SECONDS and rss <= TARGET_RSS_BYTES and same
    print(
        f"target: <= {TARGET_SECONDS:.0f} s and <= {TARGET_RSS_BYTES / 1e9:.0f} GB: "
        f"{'PASS' if ok else 'MISS'}"
    )


if __name__ == "__main__":
    main()
