"""Benchmark: what Prefect costs a 100,000-recipient campaign.

The same campaign, on the same data, run two ways, each in its own child process with a
fresh project folder (empty ledger, empty outbox):

- plain: ``run_campaign`` — the engine's stages called directly (evaluate the segment,
  plan, claim in the SQLite ledger, render every batch, send it with the ``sendgrid``
  backend to the SendGrid stand-in in its own process over loopback HTTP, record);
- prefect: ``campaign_flow`` — the same stages as a Prefect flow run with batch tasks, the
  progress artifact updated after every batch, the table, markdown and sample artifacts,
  and the campaign's start and finish events, against a real ``prefect server`` (SQLite)
  started by the benchmark, as in production.

It prints both wall times (from the call to its return: imports, and the server's own
start, are outside the clock; the Prefect import and first API round trip are printed on
their own), and the overhead, (prefect − plain) / prefect, against the target: Prefect's
share of the campaign's wall time ≤ 10 %. The data is the demo shop generator's, restricted
to customers who may get marketing mail, generated once into ``bench/.data/overhead-<n>/``.

    .venv/bin/python bench/prefect_overhead.py                  # 100,000 recipients
    .venv/bin/python bench/prefect_overhead.py --recipients 20000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eligible_shop import AS_OF, build_project, ensure_shop

CAMPAIGN = "bench-thank-you"
KEY = "SG.bench-overhead"
TARGET_SHARE = 0.10

PREFECT_YAML = f"""\
deployments:
  - name: {CAMPAIGN}
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: {CAMPAIGN}
      spec:
        segment: everyone
        template: thank_you
        resend: once
        holdout_percent: 5
        variants:
          - {{name: A, template: thank_you, weight: 1}}
          - {{name: B, template: vip_thanks, weight: 1}}
"""


def _children_cpu() -> float:
    """CPU of finished child processes (the sending process, once the run has closed it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(role: str, project_dir: Path, out: Path) -> None:
    started = time.perf_counter()
    from clvflow.campaigns.catalog import load_campaigns
    from clvflow.campaigns.run import run_campaign
    from clvflow.project.layout import Project

    project = Project.load(project_dir)
    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    result: dict[str, Any] = {"role": role}
    children_before = _children_cpu()
    if role == "plain":
        result["imports_s"] = time.perf_counter() - started
        t0, c0 = time.perf_counter(), time.process_time()
        summary = run_campaign(project, campaign, as_of=AS_OF).as_dict()
        result["wall_s"] = time.perf_counter() - t0
        result["cpu_s"] = time.process_time() - c0
    else:
        from prefect.client.orchestration import get_client

        from clvflow.orchestration.flows import campaign_flow
        from clvflow.orchestration.local import flow_session, quiet_prefect

        quiet_prefect()
        with get_client(sync_client=True) as client:
            client.api_healthcheck()
        result["imports_s"] = time.perf_counter() - started
        with flow_session():
            t0, c0 = time.perf_counter(), time.process_time()
            summary = campaign_flow(
                campaign=campaign.name, spec=campaign.spec, as_of=AS_OF, project=str(project.root)
            )
            result["wall_s"] = time.perf_counter() - t0
            result["cpu_s"] = time.process_time() - c0
    result["cpu_s"] += _children_cpu() - children_before
    result.update(
        sent=summary["sent"], planned=summary["planned"], holdout=summary["holdout"],
        failed=summary["failed"], batches=math.ceil(summary["planned"] / project.config.limits.batch_size),
        peak_mb=_peak_mb(),
    )  # fmt: skip
    out.write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2, trust_env=False).status_code == 200:
                return process, api
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the Prefect server did not start")


@contextmanager
def standin(report: Path) -> Iterator[str]:
    """``python -m clvflow.delivery.standin`` on a free port (a fresh one per side)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "clvflow.delivery.standin", "--port", "0", "--key", KEY,
         "--no-content", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the stand-in did not start (said {url!r})")
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group (the Prefect server)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run_side(
    role: str, data_dir: Path, work: Path, api: str, batch_size: int, server_pid: int
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"{role}-", dir=work))
    before = group_cpu_seconds(server_pid)
    with standin(folder / "standin.json") as url:
        result = _run_side(role, data_dir, folder, api, batch_size, url)
    result["server_cpu_s"] = group_cpu_seconds(server_pid) - before
    return result


def _run_side(
    role: str, data_dir: Path, folder: Path, api: str, batch_size: int, url: str
) -> dict[str, Any]:
    project = build_project(data_dir, folder / "project", PREFECT_YAML, batch_size=batch_size)
    out = folder / "result.json"
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("CLVFLOW_LEDGER_URL", None)
    env.update(CLVFLOW_DELIVERY="sendgrid", SENDGRID_API_HOST=url, SENDGRID_API_KEY=KEY)
    env.setdefault("CLVFLOW_SECRET_KEY", "bench-only-signing-key-" + "0" * 16)
    print(f"  {role} ...", end="", flush=True)
    subprocess.run(
        [sys.executable, __file__, "--role", role, "--project", str(project), "--out", str(out)],
        check=True, env=env,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    print(f" {result['wall_s']:.2f} s, {result['sent']} sent")
    shutil.rmtree(folder / "project", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs; best of each side")
    parser.add_argument("--role", choices=["plain", "prefect"], help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role in ("plain", "prefect"):
        child(args.role, args.project, args.out)
        return

    load_start = os.getloadavg()
    print(f"prefect overhead: {args.recipients:,} recipients, batches of {args.batch_size:,}, "
          f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")  # fmt: skip
    data_dir = ensure_shop("overhead", args.recipients)
    work = Path(tempfile.mkdtemp(prefix="clvflow-overhead-"))
    home = work / "server-home"
    home.mkdir()
    server, api = start_server(home)
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "prefect": []}
    try:
        for round_ in range(1, args.repeat + 1):
            print(f"round {round_}:")
            for role in ("plain", "prefect") if round_ % 2 else ("prefect", "plain"):
                results[role].append(
                    run_side(role, data_dir, work, api, args.batch_size, server.pid)
                )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    plain = min(results["plain"], key=lambda r: r["wall_s"])
    flow = min(results["prefect"], key=lambda r: r["wall_s"])
    print("every run (wall s / CPU of the campaign's processes s / CPU of the Prefect server s):")
    for role, runs in results.items():
        each = ", ".join(
            f"{r['wall_s']:.1f} / {r['cpu_s']:.1f} / {r['server_cpu_s']:.1f}" for r in runs
        )
        print(f"  {role}: {each}   (the best wall time is used below)")
    assert plain["sent"] == flow["sent"], (plain, flow)
    share = (flow["wall_s"] - plain["wall_s"]) / flow["wall_s"]
    load_end = os.getloadavg()
    print()
    print("| | plain engine | Prefect flow |")
    print("|---|---:|---:|")
    print(f"| campaign wall time | {plain['wall_s']:.2f} s | {flow['wall_s']:.2f} s |")
    print(
        f"| sent (holdout) | {plain['sent']:,} ({plain['holdout']:,}) | {flow['sent']:,} ({flow['holdout']:,}) |"
    )
    print(f"| batches (tasks) | {plain['batches']} | {flow['batches']} |")
    print(
        f"| messages/s | {plain['sent'] / plain['wall_s']:,.0f} | {flow['sent'] / flow['wall_s']:,.0f} |"
    )
    print(
        f"| imports (+ API check), outside the clock | {plain['imports_s']:.2f} s | {flow['imports_s']:.2f} s |"
    )
    print(f"| peak RSS | {plain['peak_mb']:,.0f} MB | {flow['peak_mb']:,.0f} MB |")
    print()
    print(f"Prefect overhead: {flow['wall_s'] - plain['wall_s']:+.2f} s = {share:.1%} of the flow's "
          f"wall time (ratio prefect/plain {flow['wall_s'] / plain['wall_s']:.3f})")  # fmt: skip
    cpu_plain = plain["cpu_s"] + plain["server_cpu_s"]
    cpu_flow = flow["cpu_s"] + flow["server_cpu_s"]
    cpu_share = (cpu_flow - cpu_plain) / cpu_flow
    print(f"in CPU (campaign process + Prefect server): {cpu_flow - cpu_plain:+.2f} s = "
          f"{cpu_share:.1%} of the flow's CPU (less sensitive to other load on the machine)")  # fmt: skip
    verdict = "PASS" if share <= TARGET_SHARE else "MISS"
    print(f"target: overhead ≤ {TARGET_SHARE:.0%} of the campaign's wall time: {verdict}")
    print(f"load average at the end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")


if __name__ == "__main__":
    main()
