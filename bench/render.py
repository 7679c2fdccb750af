"""Benchmark: complete personalized messages per second, clvflow against a naive renderer.

Renders ``--messages`` messages (default 100,000) of the shipped templates for real
customers of a generated demo shop, each in the customer's locale: subject, preheader,
HTML with inlined CSS, text part and headers (signed unsubscribe link, RFC 8058 headers),
i.e. everything a message needs except sending.

- clvflow: the batch path campaign runs use, ``Composer.compose`` on batches of 500
  (the latest order and the recommendations are looked up per batch, in the data engine);
  CSS is inlined once per template, the text part derived once per template, and each
  (template, locale) linked into one template with the shop's values folded in. What a run
  does once (lookup tables, compiling, linking) is done before the clock and its CPU time
  printed; the rate with it counted is printed too.
- naive: the same batches and lookups, then per message: render the template as written,
  inline its CSS with css-inline, convert the HTML to text with html2text, sign the link.

Both run in this process, pinned to one core (``os.sched_setaffinity``); the rates are
messages per CPU second of this process (``time.process_time``), wall rates are printed too.
A sample of messages is rendered by both and compared (same visible text, elements with
the same computed styles and links, same text-part words and links, same subject and
headers), so the speed is not bought by skipping work.

    .venv/bin/python bench/render.py                         # 100,000 messages
    .venv/bin/python bench/render.py --messages 20000 --baseline 2000   # quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_ROOT = BENCH_DIR / ".data"
TABLES = ("customers", "orders", "order_items", "products")
SEED = 7
REFERENCE = dt.date(2026, 11, 23)
AS_OF = dt.datetime.combine(REFERENCE, dt.time(10, 0))
BATCH = 500
TARGET_RATE = 8_000.0  # on public Jinja and MarkupSafe API only (bench/README.md)
TARGET_SPEEDUP = 2.0
KEY = b"bench-signing-key-0123456789abcdef"

sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))  # render_compare, the test oracle


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def ensure_data(customers: int, orders: int) -> Path:
    """The demo shop as Parquet, generated once into bench/.data/render-<sizes>/."""
    from clvflow.demo.shop import ShopSize, generate_shop

    out = DATA_ROOT / f"render-{customers}x{orders}"
    key = {"reference": REFERENCE.isoformat(), "seed": SEED, "customers": customers}
    key["orders"] = orders
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == key:
        return out
    shutil.rmtree(out, ignore_errors=True)
    print(f"data: generating {customers:,} customers / {orders:,} orders into {out} ...")
    generate_shop(
        out,
        reference=REFERENCE,
        seed=SEED,
        size=ShopSize(customers=customers, orders=orders),
        fmt="parquet",
    )
    manifest.write_text(json.dumps(key))
    return out


def build_project(data_dir: Path, into: Path) -> Path:
    import yaml

    config = yaml.safe_load((REPO / "clvflow.yaml").read_text(encoding="utf-8"))
    config["data"] = {t: str(data_dir / f"{t}.parquet") for t in TABLES}
    shutil.copytree(REPO / "templates", into / "templates")
    (into / "segments").mkdir()
    (into / "clvflow.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), "utf-8")
    return into


@dataclass
class Message:
    subject: str
    preheader: str | None
    html: str
    text: str
    headers: dict[str, str]


@dataclass
class Side:
    name: str
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    samples: dict[tuple[str, str], Message] = field(default_factory=dict)

    def rate(self, template: str | None = None, wall: bool = False) -> float:
        times = self.wall if wall else self.cpu
        names = [template] if template else list(times)
        return sum(self.count[n] for n in names) / max(sum(times[n] for n in names), 1e-9)


def batches(rows: Sequence[dict[str, Any]], total: int) -> list[list[dict[str, Any]]]:
    """``total`` rows in batches of BATCH, cycling through ``rows``."""
    out: list[list[dict[str, Any]]] = []
    taken = 0
    while taken < total:
        size = min(BATCH, total - taken)
        start = taken % len(rows)
        batch = [rows[(start + i) % len(rows)] for i in range(size)]
        out.append(batch)
        taken += size
    return out


def timed(side: Side, template: str, work: Callable[[], int]) -> None:
    c0, w0 = time.process_time(), time.perf_counter()
    n = work()
    side.cpu[template] = side.cpu.get(template, 0.0) + time.process_time() - c0
    side.wall[template] = side.wall.get(template, 0.0) + time.perf_counter() - w0
    side.count[template] = side.count.get(template, 0) + n


def main() -> int:  # noqa: PLR0915 (one script: set up, measure, compare, report)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="naive messages")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=80_000)
    parser.add_argument("--compare-every", type=int, default=97, help="sample step")
    parser.add_argument("--templates", default="", help="comma-separated (default: all)")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1]
    os.sched_setaffinity(0, {core})
    os.environ.setdefault("DUCKDB_THREADS", "1")
    print(f"load average at start: {loadavg()}  (pinned to core {core} of {len(cores)})")
    print(f"python {platform.python_version()}, {platform.machine()}")

    from render_compare import html_differences, text_differences

    from clvflow.compliance.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url
    from clvflow.data.sources import open_shop_data
    from clvflow.personalization.orders import latest_orders
    from clvflow.personalization.promo import promo_row
    from clvflow.project.campaign_spec import PromoSpec
    from clvflow.project.layout import Project
    from clvflow.rendering.composer import Composer
    from clvflow.rendering.context import message_context
    from clvflow.rendering.render import naive_email
    from clvflow.rendering.templates import TemplateLibrary
    from clvflow.segments.members import customer_rows

    data_dir = ensure_data(args.customers, args.orders)
    workdir = Path(tempfile.mkdtemp(prefix="clvflow-bench-render-"))
    try:
        project = Project.load(build_project(data_dir, workdir / "project"))
        shop = project.config.shop
        data = open_shop_data(project)
        data.rows("SET threads = 1")
        ids = [
            str(r[0])
            for r in data.rows(
                f"{data.with_clause()}SELECT DISTINCT customer_id FROM orders "
                f"ORDER BY customer_id LIMIT {min(args.customers, 20_000)}"
            )
        ]
        rows = customer_rows(data, ids, AS_OF)
        library = TemplateLibrary(project.templates_dir, shop.default_locale)
        names = [n for n in args.templates.split(",") if n] or library.names()
        spec = PromoSpec(discount_percent=15, min_order=40, valid_days=14, prefix="BACK")
        promos = {
            str(r["customer_id"]): promo_row(
                spec, "bench", "once", str(r["customer_id"]), shop.currency, AS_OF
            )
            for r in rows
        }
        composer = Composer(shop, data, library, KEY, AS_OF)
        # Per run, before the clock: co-purchase counts, the lookup tables (latest orders,
        # recommendations), every (template, locale) compiled and linked.
        setup = time.process_time()
        for name in names:
            for locale in shop.locales:
                library.get(name, locale)
            composer.prepare(name)
        setup = time.process_time() - setup
        per_template = args.messages // len(names)
        naive_per_template = max(1, min(args.baseline, args.messages) // len(names))
        print(
            f"shop: {len(rows):,} customers with orders; templates: {', '.join(names)}\n"
            f"clvflow: {per_template * len(names):,} messages; naive: "
            f"{naive_per_template * len(names):,} messages (the same batches, first ones)"
        )
        print(f"per-run setup (lookups, compiling, linking): {setup:.2f} CPU s, before the clock")
        for name in names:
            compiled = library.get(name, shop.default_locale)
            how = "once per template" if compiled.css_inlined else "per message"
            print(
                f"  {name}: CSS inlined {how}"
                + (f" ({compiled.inline_reason})" if not compiled.css_inlined else "")
            )

        fast, naive = Side("clvflow"), Side("naive")
        step = args.compare_every

        for name in names:
            work = batches(rows, per_template)

            def run_fast(name: str = name, work: list[list[dict[str, Any]]] = work) -> int:
                n = 0
                for b, batch in enumerate(work):
                    composed = composer.compose(name, "bench", [("once", r) for r in batch], promos)
                    for i, item in enumerate(composed):
                        if item.error is not None:
                            raise item.error
                        k = b * BATCH + i
                        if k % step == 0 and k < naive_per_template:
                            e = item.email
                            assert e is not None
                            fast.samples[(name, str(k))] = Message(
                                e.subject, e.preheader, e.html, e.text, item.headers
                            )
                    n += len(composed)
                return n

            def run_naive(name: str = name, work: list[list[dict[str, Any]]] = work) -> int:
                n = 0
                for b, batch in enumerate(work):
                    if n >= naive_per_template:
                        break
                    todo = batch[: naive_per_template - n]
                    cids = [str(r["customer_id"]) for r in todo]
                    orders = latest_orders(data, cids, AS_OF)
                    recos = composer.recommender.for_customers(cids)
                    for i, row in enumerate(todo):
                        cid = cids[i]
                        token = make_token(KEY, cid, "bench")
                        url = unsubscribe_url(shop.unsubscribe.base_url, token)
                        locale = composer.locale_for(row)
                        compiled = library.get(name, locale)
                        context = message_context(
                            customer=row,
                            shop=composer._shop_context,
                            campaign={"name": "bench", "occurrence": "once"},
                            order=orders.get(cid),
                            recommendations=recos.get(cid, []),
                            promo=promos.get(cid),
                            unsubscribe_url=url,
                            locale=locale,
                            now=AS_OF,
                        )
                        email = naive_email(compiled, context)
                        headers = {"X-Clvflow-Campaign": "bench"}
                        if email.kind == "marketing":
                            headers.update(
                                list_unsubscribe_headers(url, shop.unsubscribe.mailto, token)
                            )
                        k = b * BATCH + i
                        if k % step == 0:
                            naive.samples[(name, str(k))] = Message(
                                email.subject, email.preheader, email.html, email.text, headers
                            )
                    n += len(todo)
                return n

            timed(fast, name, run_fast)
            timed(naive, name, run_naive)
            print(
                f"  {name:<26} clvflow {fast.rate(name):>8,.0f}/s   naive {naive.rate(name):>7,.0f}/s"
                f"   load {loadavg()}",
                flush=True,
            )

        problems: list[str] = []
        for key, theirs in naive.samples.items():
            ours = fast.samples.get(key)
            if ours is None:
                problems.append(f"{key}: not rendered by clvflow")
                continue
            diffs = html_differences(ours.html, theirs.html) + text_differences(
                ours.text, theirs.text
            )
            if (ours.subject, ours.preheader) != (theirs.subject, theirs.preheader):
                diffs.append(f"subject {ours.subject!r} vs {theirs.subject!r}")
            if ours.headers != theirs.headers:
                diffs.append("headers differ")
            if "style=" not in ours.html or "<style" in ours.html:
                diffs.append("CSS not inlined")
            problems += [f"{key[0]} #{key[1]}: {d}" for d in diffs]
        data.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    total_fast, total_naive = fast.rate(), naive.rate()
    ratio = total_fast / total_naive
    print()
    print(f"{'template':<26} {'clvflow msg/s':>14} {'naive msg/s':>12} {'ratio':>7}")
    for name in names:
        r = fast.rate(name) / naive.rate(name)
        print(f"{name:<26} {fast.rate(name):>14,.0f} {naive.rate(name):>12,.0f} {r:>6.1f}×")
    print(
        f"{'all (CPU time, one core)':<26} {total_fast:>14,.0f} {total_naive:>12,.0f} {ratio:>6.1f}×"
    )
    print(f"{'all (wall time)':<26} {fast.rate(wall=True):>14,.0f} {naive.rate(wall=True):>12,.0f}")
    print(
        f"clvflow: {sum(fast.count.values()):,} messages in {sum(fast.cpu.values()):.2f} CPU s; "
        f"naive: {sum(naive.count.values()):,} in {sum(naive.cpu.values()):.2f} CPU s"
    )
    with_setup = sum(fast.count.values()) / (sum(fast.cpu.values()) + setup)
    print(f"clvflow with the per-run setup counted: {with_setup:,.0f} messages/s")
    compared = len(naive.samples)
    if problems:
        print(f"equivalence: {len(problems)} difference(s) in {compared} compared messages:")
        for p in problems[:20]:
            print("  " + p)
    else:
        print(f"equivalence: {compared} sampled messages read the same (text, styles, links)")
    print(f"load average at end: {loadavg()}")
    ok_rate = total_fast >= TARGET_RATE
    ok_ratio = ratio >= TARGET_SPEEDUP
    print(
        f"target ≥ {TARGET_RATE:,.0f} messages/s on one core: {'PASS' if ok_rate else 'MISS'} ({total_fast:,.0f})"
    )
    print(
        f"target ≥ {TARGET_SPEEDUP:.0f}× the naive baseline: {'PASS' if ok_ratio else 'MISS'} ({ratio:.1f}×)"
    )
    print(f"equivalent output: {'PASS' if not problems else 'MISS'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
