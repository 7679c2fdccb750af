"""Benchmark: a 100,000-recipient campaign end to end through SendGrid's API (the stand-in).

Measured in one run, each side in its own child process, each against its own stand-in
process on loopback HTTP (the stand-in of ``tests/fakes``, served by uvicorn, which validates
every request against SendGrid's schema and counts what it accepted per recipient):

- clvflow: ``run_campaign`` with the ``sendgrid`` backend, the real path: evaluate the
  segment, plan (suppressions, consent, address validation, ledger, frequency cap), claim in
  the SQLite ledger, then per batch render (the shipped ``win_back`` template, with a unique
  promo code and recommendations), mark sending, send (grouped requests over a pool of
  kept-alive connections), record every outcome;
- a naive loop: the same segment members rendered by the same composer, then one
  ``SendGridAPIClient.send`` per message (the official client, a new connection per call),
  sequential, with no ledger at all (so it does less work than clvflow). It sends the first
  ``--naive-recipients`` messages, half of them before clvflow's run and half after (the
  machine's speed drifts: its rate is the two halves' together, each half's is printed);
  its loop is scaled to the campaign's size, its one-time costs (segment evaluation, the
  per-run lookup tables) are counted once.

Both report messages per second (wall, from after the imports) and peak RSS; clvflow also
reports where its time went, per stage. The data is the demo shop generator's, restricted to
customers who may get marketing mail, generated once into ``bench/.data/send-<n>/``.

    .venv/bin/python bench/send.py                     # 100,000 recipients; naive on 10,000
    .venv/bin/python bench/send.py --recipients 20000  # quick check
    .venv/bin/python bench/send.py --profile           # + the top functions of clvflow's run
    .venv/bin/python bench/send.py --concurrency 4     # clvflow with 4 connections (default 8)
    .venv/bin/python bench/send.py --recipients 20000 --naive-recipients 100 \
        --latency 0.1 --concurrency 256                # a 100 ms round trip, as to SendGrid
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eligible_shop import AS_OF, build_project, ensure_shop

KEY = "SG.bench-key"
CAMPAIGN = "bench-win-back"

DELIVER = "send: mark sending, hand over"
TARGET_RATE = 3000.0  # messages per second, end to end
TARGET_SPEEDUP = 4.0  # against the naive loop

PREFECT_YAML = f"""\
deployments:
  - name: {CAMPAIGN}
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: {CAMPAIGN}
      spec:
        segment: everyone
        template: win_back
        resend: once
        promo: {{discount_percent: 15, min_order: 40, valid_days: 21, prefix: BACK}}
"""


# --- data and project --------------------------------------------------------------------------


# --- the stand-in, in its own process -----------------------------------------------------------


@contextmanager
def standin(report: Path, latency: float = 0.0) -> Iterator[tuple[str, int]]:
    """The SendGrid stand-in (``tests/fakes``) on a free port; yields (url, pid). With
    ``latency``, every request waits that long before its reply (a remote API's round trip)."""
    delay = ["--rate-slow", "1", "--slow-delay", str(latency)] if latency > 0 else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakes.sendgrid_standin", "--port", "0", "--key", KEY,
         "--no-content", "--report", str(report), *delay],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "tests")},
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the stand-in did not start (said {url!r})")
    try:
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the two sides ------------------------------------------------------------------------------


class StageClock:
    """Wall time per stage, each call's own time (nested timed calls are subtracted)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first: dict[str, float] = {}  # when each stage was first entered (perf_counter)
        self._local = threading.local()  # stages nest per thread (rendering and sending overlap)
        self._lock = threading.Lock()

    def wrap(self, owner: Any, method: str, stage: str) -> None:
        original: Callable[..., Any] | None = getattr(owner, method, None)
        if original is None:
            return  # a stage this version of the code does not have

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[float] = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                nested = stack.pop()
                with self._lock:
                    self.totals[stage] = self.totals.get(stage, 0.0) + elapsed - nested
                    self.calls[stage] = self.calls.get(stage, 0) + 1
                    self.first.setdefault(stage, started)
                if stack:
                    stack[-1] += elapsed

        setattr(owner, method, timed)


def timed_stages() -> StageClock:
    """Wrap the stages of a run (in this process) to time them."""
    from clvflow.campaigns import run as campaigns
    from clvflow.delivery.sendgrid import SendGridSender
    from clvflow.ledger.store import Ledger
    from clvflow.pipeline import run as pipeline
    from clvflow.rendering.composer import Composer

    clock = StageClock()
    clock.wrap(campaigns, "segment_members", "evaluate segment")
    for method, stage in (
        ("plan", "plan (suppressions, consent, addresses, ledger, cap)"),
        ("claim_plan", "claim (ledger inserts)"),
        ("still_claimed", "a batch's ledger statuses"),
        ("render", "render: rows, promo codes, message assembly"),
        ("_hand_over", DELIVER),
        ("record", "record: outcomes"),
    ):
        clock.wrap(pipeline, method, stage)
    clock.wrap(Composer, "compose", "render: composer (context, Jinja, CSS, text)")
    clock.wrap(SendGridSender, "prepare", "render: grouping and request bodies")
    clock.wrap(SendGridSender, "_send", "send: the requests (threads, on the wire)")
    for method in ("mark_sending", "record", "renew_lease", "promo_codes_for"):
        clock.wrap(Ledger, method, "ledger: per-batch writes")
    return clock


_WORKER: dict[str, Any] = {}


def worker_batch(job: tuple[str, Any, list[Any]]) -> tuple[Any, dict[str, float], float]:
    """In a pool process: send one claimed batch the way the flow's fan-out does (a
    workspace and a sender opened once per process, the rows read from the data)."""
    from contextlib import ExitStack

    from clvflow.delivery.senders import open_sender
    from clvflow.pipeline import run as pipeline
    from clvflow.pipeline.render import stored_rows
    from clvflow.pipeline.workspace import open_workspace
    from clvflow.project.layout import Project

    project_dir, run_job, claims = job
    if "ws" not in _WORKER:
        _WORKER["clock"] = timed_stages()
        project = Project.load(project_dir)
        stack = _WORKER["stack"] = ExitStack()
        ws = _WORKER["ws"] = stack.enter_context(open_workspace(project, AS_OF))
        _WORKER["sender"] = open_sender(project)
        stack.callback(_WORKER["sender"].close)
        _WORKER["rows"] = stored_rows(ws.data, run_job)
    clock: StageClock = _WORKER["clock"]
    before = dict(clock.totals)
    cpu = time.process_time()
    result = pipeline.send_batch(_WORKER["ws"], run_job, claims, _WORKER["sender"], _WORKER["rows"])
    spent = {k: v - before.get(k, 0.0) for k, v in clock.totals.items()}
    return result, spent, time.process_time() - cpu


def fan_out(project: Any, campaign: Any, workers: int, clock: StageClock) -> tuple[Any, float]:
    """Plan and claim here, send the batches over ``workers`` processes; returns the
    summary and the CPU seconds the workers spent on batches."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from clvflow.campaigns.run import campaign_job, new_summary, segment_members
    from clvflow.pipeline import run as pipeline
    from clvflow.pipeline.claim import batches
    from clvflow.pipeline.workspace import open_workspace

    worker_cpu = 0.0
    job = campaign_job(project, campaign, AS_OF)
    summary = new_summary(job, campaign.spec.segment)
    with open_workspace(project, AS_OF) as ws:
        planned = pipeline.plan(ws, job, segment_members(ws, campaign.spec.segment, AS_OF))
        summary.planned_as(planned)
        claims = pipeline.claim_plan(ws, job, planned)
        size = project.config.limits.batch_size
        jobs = [(str(project.root), job, batch) for batch in batches(claims, size)]
        try:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                for result, spent, cpu in pool.map(worker_batch, jobs):
                    summary.add(result)
                    worker_cpu += cpu
                    for stage, seconds in spent.items():
                        clock.totals[stage] = clock.totals.get(stage, 0.0) + seconds / workers
        except BaseException as error:
            pipeline.fail(ws, job, claims, summary, error)
            raise
        return pipeline.finish(ws, job, summary), worker_cpu


def child_clvflow(project_dir: Path, out: Path, profile: Path | None, workers: int) -> None:
    from clvflow.campaigns.catalog import load_campaigns
    from clvflow.campaigns.run import run_campaign
    from clvflow.ledger.store import Ledger
    from clvflow.project.layout import Project

    clock = timed_stages()
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    project = Project.load(project_dir)
    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, started = time.process_time(), time.perf_counter()
    worker_cpu = 0.0
    if workers <= 1:
        summary = run_campaign(project, campaign, as_of=AS_OF)
    else:
        summary, worker_cpu = fan_out(project, campaign, workers, clock)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0 + worker_cpu
    if profiler is not None and profile is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    ledger = Ledger(project.ledger_url)
    statuses = ledger.status_counts(CAMPAIGN)
    ledger.close()
    result = {
        "wall": wall,
        "cpu": cpu,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "rss_imports": rss_imports,
        "workers": workers,
        "summary": summary.as_dict(),
        "ledger": statuses,
        "stages": clock.totals,
        "calls": clock.calls,
        "first_handover": clock.first.get(DELIVER, started) - started,
    }
    out.write_text(json.dumps(result, default=str))


def child_naive(project_dir: Path, out: Path, limit: int) -> None:
    """Render the same members with the same composer, then send each with the official
    client, one call at a time, in order. No ledger: nothing is claimed or recorded."""
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import CustomArg, Header, Mail

    from clvflow.compliance.secret import signing_key
    from clvflow.data.sources import open_shop_data
    from clvflow.project.layout import Project
    from clvflow.rendering.composer import Composer
    from clvflow.rendering.templates import TemplateLibrary
    from clvflow.segments.catalog import SegmentCatalog, compile_segment
    from clvflow.segments.members import member_frame, records

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    project = Project.load(project_dir)
    cfg = project.config
    started = time.perf_counter()
    data = open_shop_data(project)
    segments = SegmentCatalog.load(project.segments_dir)
    members = member_frame(data, compile_segment(segments, "everyone", data, AS_OF), AS_OF)
    rows = records(members)
    evaluated = time.perf_counter() - started
    rows = rows[:limit] if limit else rows
    templates = TemplateLibrary(project.templates_dir, cfg.shop.default_locale)
    composer = Composer(
        cfg.shop, data, templates, signing_key(project.state_dir, allow_local=False), AS_OF
    )
    composer.prepare("win_back")  # the per-run tables: once, not once per message
    prepared = time.perf_counter() - started
    client = SendGridAPIClient(os.environ["SENDGRID_API_KEY"], host=os.environ["SENDGRID_API_HOST"])
    client.client.timeout = 10
    sent = failed = 0
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        for row, item in zip(
            chunk, composer.compose("win_back", CAMPAIGN, [("once", r) for r in chunk]), strict=True
        ):
            if item.email is None:
                failed += 1
                continue
            mail = Mail(
                from_email=(cfg.shop.from_email, cfg.shop.from_name),
                to_emails=str(row["email"]),
                subject=item.email.subject,
                plain_text_content=item.email.text,
                html_content=item.email.html,
            )
            for name, value in item.headers.items():
                mail.header = Header(name, value)
            mail.custom_arg = CustomArg("clvflow_customer", str(row["customer_id"]))
            try:
                client.send(mail)
                sent += 1
            except HTTPError:
                failed += 1
    wall = time.perf_counter() - started
    data.close()
    result = {
        "wall": wall,
        "evaluate": evaluated,
        "fixed": prepared,
        "sent": sent,
        "failed": failed,
        "members": len(members),
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_imports": rss_imports,
    }
    out.write_text(json.dumps(result))


# --- the parent ---------------------------------------------------------------------------------


def run_side(
    role: str, project: Path, work: Path, args: argparse.Namespace, part: str = ""
) -> dict[str, Any]:
    """One side against a fresh stand-in; returns its result plus the stand-in's report.
    ``part``: "first" or "second" half of the naive loop's messages."""
    out = work / f"{role}{part}.json"
    report_file = work / f"{role}{part}-standin.json"
    naive = args.naive_recipients
    if part:
        naive = naive - naive // 2 if part == "first" else naive // 2
    env = dict(os.environ)
    env.update(
        CLVFLOW_DELIVERY="sendgrid",
        SENDGRID_API_KEY=KEY,
        CLVFLOW_LEDGER_URL=f"sqlite:///{work / (role + '-ledger.db')}",
        CLVFLOW_SECRET_KEY="bench-signing-key-0123456789abcdef",
        NO_PROXY="127.0.0.1,localhost",
    )
    command = [sys.executable, __file__, "--role", role, "--project", str(project),
               "--out", str(out), "--recipients", str(args.recipients),
               "--naive-recipients", str(naive),
               "--workers", str(args.workers)]  # fmt: skip
    if role == "clvflow" and args.profile:
        command += ["--profile-out", str(work / "clvflow.prof")]
    with standin(report_file, args.latency) as (url, pid):
        env["SENDGRID_API_HOST"] = url
        cpu0 = cpu_seconds(pid)
        subprocess.run(command, check=True, env=env)
        standin_cpu = cpu_seconds(pid) - cpu0
    result: dict[str, Any] = json.loads(out.read_text())
    result["standin"] = json.loads(report_file.read_text())
    result["standin_cpu"] = standin_cpu
    return result


def both_halves(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The naive loop's two halves as one run: their loops summed, one-time costs averaged."""
    parts = (first, second)
    fixed = sum(p["fixed"] for p in parts) / 2
    loops = [p["wall"] - p["fixed"] for p in parts]
    return {
        "wall": fixed + sum(loops),
        "fixed": fixed,
        "evaluate": sum(p["evaluate"] for p in parts) / 2,
        "sent": sum(p["sent"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "members": first["members"],
        "rss": max(p["rss"] for p in parts),
        "standin": {"accepted": sum(p["standin"]["accepted"] for p in parts)},
        "standin_cpu": sum(p["standin_cpu"] for p in parts),
        "halves": [loop / max(p["sent"], 1) for p, loop in zip(parts, loops, strict=True)],
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(ours: dict[str, Any], naive: dict[str, Any], args: argparse.Namespace) -> None:
    summary = ours["summary"]
    sent = int(summary["sent"])
    rate = sent / ours["wall"]
    sg = ours["standin"]
    print()
    print(f"clvflow: {summary['members']:,} members, {summary['planned']:,} planned, "
          f"{sent:,} sent, {summary['failed']} failed, {summary['unknown']} unknown; "
          f"ledger {ours['ledger']}")  # fmt: skip
    print(
        f"  stand-in accepted {sg['accepted']:,} requests, {sg['deliveries']:,} emails for "
        f"{sg['recipients']:,} recipients; "
        f"more than once: {len(sg['recipients_more_than_once'])}; replies {sg['statuses']}"
    )
    exact = (
        sg["deliveries"] == sent == summary["planned"] == sg["recipients"]
        and not sg["recipients_more_than_once"]
        and ours["ledger"].get("sent") == sent
    )
    print(f"  every planned message accepted exactly once and recorded sent: {exact}")
    if ours["workers"] <= 1:
        print(f"  the first batch was handed over after {ours['first_handover']:.1f} s "
              "(evaluate, plan, claim, lookup tables, first render)")  # fmt: skip
    print(
        f"  wall {ours['wall']:.1f} s, CPU {ours['cpu']:.1f} s "
        f"({ours['cpu'] / max(sent, 1) * 1e6:.0f} µs/message); stand-in CPU "
        f"{ours['standin_cpu']:.1f} s ({ours['standin_cpu'] / max(sent, 1) * 1e6:.0f} µs/message)"
    )
    workers = f"; largest worker {ours['rss_workers'] / 1e6:,.0f} MB" if ours["workers"] > 1 else ""
    print(f"  peak RSS {ours['rss'] / 1e6:,.0f} MB ({ours['rss_imports'] / 1e6:,.0f} MB after "
          f"imports){workers}; stand-in {sg['max_rss_mb'] * 1.048576:,.0f} MB")  # fmt: skip
    per = " per worker (summed over workers ÷ workers)" if ours["workers"] > 1 else ""
    print(f"  where the wall time went (each stage's own time{per}):")
    total = sum(ours["stages"].values())
    for stage, seconds in sorted(ours["stages"].items(), key=lambda kv: -kv[1]):
        print(f"    {stage:<55} {seconds:7.2f} s  {seconds / ours['wall']:5.1%}  "
              f"{seconds / max(sent, 1) * 1e6:6.0f} µs/msg")  # fmt: skip
    if total <= ours["wall"]:
        print(f"    {'(outside the timed stages)':<55} {ours['wall'] - total:7.2f} s")
    else:  # the stages of two threads overlap
        print(f"    {'(overlap: sending ran while the next batch rendered)':<55} "
              f"{total - ours['wall']:7.2f} s")  # fmt: skip

    n_naive = naive["sent"]
    fixed = naive["fixed"]  # evaluate the segment, build the per-run tables: once per run
    loop = naive["wall"] - fixed
    # the naive side sends the first --naive-recipients members: scale its loop to all
    naive_all = fixed + loop * summary["planned"] / max(n_naive, 1)
    naive_rate = summary["planned"] / naive_all
    print()
    print(
        f"naive: {n_naive:,} sent, {naive['failed']} failed, stand-in accepted "
        f"{naive['standin']['accepted']:,}; evaluate {naive['evaluate']:.1f} s, per-run "
        f"tables {fixed - naive['evaluate']:.1f} s, render + send loop {loop:.1f} s ({loop / max(n_naive, 1) * 1e6:.0f} µs/message)"
    )
    if "halves" in naive:
        before, after = (per * 1e6 for per in naive["halves"])
        print(f"  half before clvflow's run {before:.0f} µs/message, half after {after:.0f}")
    print(f"  scaled to {summary['planned']:,} messages: {naive_all:.1f} s, "
          f"{naive_rate:,.0f} messages/s; peak RSS {naive['rss'] / 1e6:,.0f} MB; "
          f"stand-in CPU {naive['standin_cpu'] / max(n_naive, 1) * 1e6:.0f} µs/message")  # fmt: skip
    ratio = rate / naive_rate
    print()
    print(f"clvflow {rate:,.0f} messages/s end to end, naive {naive_rate:,.0f} messages/s: "
          f"{ratio:.2f}×")  # fmt: skip
    if args.latency:
        print(f"  (with {args.latency * 1000:g} ms a request; the targets are for loopback)")
    print(f"  ≥ {TARGET_RATE:,.0f} messages/s: {verdict(rate >= TARGET_RATE)} ({rate:,.0f})")
    print(f"  ≥ {TARGET_SPEEDUP:.0f}× the naive loop: {verdict(ratio >= TARGET_SPEEDUP)} "
          f"({ratio:.2f}×)")  # fmt: skip
    print(f"  exactly once: {verdict(exact)}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    print(f"\nclvflow's run, top {top} functions by own time (cProfile, slows the run):")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipients", type=int, default=100_000, help="campaign size (100,000)")
    p.add_argument("--naive-recipients", type=int, default=10_000,
                   help="messages the naive loop sends (its rate is scaled; 0: all)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1,
                   help="1: run_campaign in one process; N: batches over N processes, "
                   "CampaignRun(worker=True), as the flow's fan-out does")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=0,
                   help="delivery.sendgrid.concurrency for clvflow (0: the default, 8)")  # fmt: skip
    p.add_argument("--per-request", type=int, default=0,
                   help="delivery.sendgrid.recipients_per_request (0: the default, 500)")  # fmt: skip
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds every request waits at the stand-in, as over the internet "
                   "(messages/s then follow connections / latency)")  # fmt: skip
    p.add_argument("--regenerate", action="store_true", help="rebuild the cached data")
    p.add_argument("--profile", action="store_true", help="cProfile clvflow's run as well")
    p.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    p.add_argument("--role", choices=("clvflow", "naive"), help=argparse.SUPPRESS)
    p.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role == "clvflow":
        return child_clvflow(args.project, args.out, args.profile_out, args.workers)
    if args.role == "naive":
        return child_naive(args.project, args.out, args.naive_recipients)
    load = os.getloadavg()
    mode = "run_campaign" if args.workers <= 1 else f"{args.workers} worker processes"
    if args.concurrency:
        mode += f", {args.concurrency} connections"
    if args.per_request:
        mode += f", {args.per_request} recipients a request"
    if args.latency:
        mode += f", {args.latency * 1000:g} ms a request"
    print(f"send benchmark: {args.recipients:,} recipients, clvflow via {mode}, "
          f"{os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    data_dir = ensure_shop("send", args.recipients, args.regenerate)
    work = Path(tempfile.mkdtemp(prefix="clvflow-send-bench-"))
    try:
        project = build_project(data_dir, work / "project", PREFECT_YAML)
        settings = {"concurrency": args.concurrency, "recipients_per_request": args.per_request}
        chosen = "".join(f"    {k}: {v}\n" for k, v in settings.items() if v)
        if chosen:
            config = project / "clvflow.yaml"
            text = config.read_text(encoding="utf-8")
            setting = f"delivery:\n  sendgrid:\n{chosen}"
            config.write_text(text.replace("delivery:\n", setting, 1), encoding="utf-8")
        halves = args.naive_recipients >= 2  # 0 (all of them): once, after clvflow
        if halves:
            print("naive, first half: running ...", flush=True)
            first = run_side("naive", project, work, args, "first")
        print("clvflow: running ...", flush=True)
        ours = run_side("clvflow", project, work, args)
        print(f"clvflow: {ours['wall']:.1f} s; naive: running ...", flush=True)
        if halves:
            naive = both_halves(first, run_side("naive", project, work, args, "second"))
        else:
            naive = run_side("naive", project, work, args)
        report(ours, naive, args)
        if args.profile:
            print_profile(work / "clvflow.prof")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
