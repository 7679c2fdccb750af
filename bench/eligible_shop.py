"""The shop the campaign benchmarks send to (``send.py``, ``prefect_overhead.py``).

The demo shop generator's data as Parquet, restricted to ``recipients`` customers who may
all get marketing mail (consent, a valid address), generated once into
``bench/.data/<prefix>-<recipients>/`` with a manifest, in a child process (so the
benchmark's own peak RSS stays its own), and a project folder over it: the repository's
templates and clvflow.yaml, one segment of everyone, one campaign.

    python bench/eligible_shop.py OUT_DIR RECIPIENTS     # what the child process runs
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_ROOT = BENCH_DIR / ".data"
TABLES = ("customers", "orders", "order_items", "products")
SEED = 7
REFERENCE = dt.date(2026, 11, 23)
AS_OF = dt.datetime(2026, 11, 23, 10, 0)
SEGMENT = (
    "description: every customer of the benchmark shop\nwhere:\n  customer_id: {is_set: true}\n"
)


def ensure_shop(prefix: str, recipients: int, regenerate: bool = False) -> Path:
    """The cached shop of ``recipients`` eligible customers (generated when missing)."""
    out = DATA_ROOT / f"{prefix}-{recipients}"
    manifest = out / "manifest.json"
    key = {"recipients": recipients, "seed": SEED, "reference": REFERENCE.isoformat()}
    if (
        not regenerate
        and manifest.is_file()
        and json.loads(manifest.read_text()).items() >= key.items()
    ):
        print(f"data: reusing {out}")
        return out
    print(f"data: generating {out} ...", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, str(out), str(recipients)], check=True)
    print(f"data: done in {time.perf_counter() - started:.1f} s")
    return out


def generate(out: Path, recipients: int) -> None:
    """A demo shop with spare customers; keep ``recipients`` who may get marketing mail."""
    sys.path.insert(0, str(REPO / "src"))
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from clvflow.demo.shop import ShopSize, generate_shop
    from clvflow.planning.addresses import address_is_valid

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    customers = math.ceil(recipients * 1.25) + 100
    size = ShopSize(customers=customers, orders=customers * 3)
    generate_shop(tmp, reference=REFERENCE, seed=SEED, size=size, fmt="parquet")
    table = pq.read_table(tmp / "customers.parquet")
    consent = pc.fill_null(table["accepts_marketing"], True)
    valid = pa.array([address_is_valid(str(e)) for e in table["email"].to_pylist()])
    # no time zone column: every customer is in the shop's (no send window here anyway)
    table = table.filter(pc.and_(consent, valid)).slice(0, recipients)
    if table.num_rows < recipients:
        raise SystemExit(f"only {table.num_rows} eligible customers; raise the spare share")
    pq.write_table(table, tmp / "customers.parquet")
    key = {"recipients": recipients, "seed": SEED, "reference": REFERENCE.isoformat()}
    (tmp / "manifest.json").write_text(json.dumps({**key, "generated_customers": customers}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build_project(
    data_dir: Path, into: Path, prefect_yaml: str, *, batch_size: int | None = None
) -> Path:
    """A project folder over ``data_dir``: templates, flows, clvflow.yaml, one segment."""
    shutil.copytree(REPO / "templates", into / "templates")
    shutil.copytree(REPO / "flows", into / "flows")
    (into / "segments").mkdir()
    (into / "segments" / "everyone.yaml").write_text(SEGMENT)
    (into / "prefect.yaml").write_text(prefect_yaml)
    config = (REPO / "clvflow.yaml").read_text(encoding="utf-8")
    for table in TABLES:
        config = config.replace(f"data/{table}.csv", str(data_dir / f"{table}.parquet"))
    if batch_size is not None:
        config = config.replace("batch_size: 500", f"batch_size: {batch_size}")
    (into / "clvflow.yaml").write_text(config, encoding="utf-8")
    return into


if __name__ == "__main__":
    generate(Path(sys.argv[1]), int(sys.argv[2]))
