"""Command line: run the stand-in in the foreground until SIGTERM or Ctrl-C.

    PYTHONPATH=tests python -m fakes.sendgrid_standin --port 8025 --key SG.local --rate-429 0.1

The base URL is the first line on stdout; ``--report FILE`` writes what the stand-in saw
(JSON) when it stops, for a caller in another process.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .app import logger
from .faults import FaultConfig
from .standin import SendGridStandIn

__all__ = ["main", "report"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fakes.sendgrid_standin",
        description="Run a local SendGrid v3 stand-in in the foreground (Ctrl-C to stop).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8025, help="port (0 picks a free one)")
    p.add_argument("--key", action="append", dest="keys", help="accepted API key (repeatable)")
    p.add_argument("--forbidden-key", action="append", default=[], help="key answered with 403")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    for name in ("429", "500", "503", "drop", "accept-drop", "slow"):
        p.add_argument(
            f"--rate-{name}", type=float, default=0.0, metavar="P", help="probability per request"
        )
    p.add_argument("--slow-delay", type=float, default=0.5, metavar="SECONDS")
    p.add_argument("--rate-limit-limit", type=int, default=600, metavar="N")
    p.add_argument("--rate-limit-reset", type=float, default=1.0, metavar="SECONDS")
    p.add_argument(
        "--faults-on-suppressions", action="store_true", help="fault the suppression GETs too"
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.add_argument(
        "--no-content", action="store_true", help="record accepted bodies without their content"
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="on exit, write a JSON report: replies by status, deliveries per recipient, CPU",
    )
    return p


def report(standin: SendGridStandIn) -> dict[str, Any]:
    """What the stand-in saw, for a caller in another process (see ``--report``)."""
    per_recipient = standin.deliveries_per_recipient()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "accepted": len(standin.accepted()),
        "deliveries": sum(per_recipient.values()),
        "sandboxed": len(standin.sandboxed()),
        "statuses": {str(k): v for k, v in sorted(standin.status_counts().items())},
        "dropped_connections": standin.dropped_connections(),
        "recipients": len(per_recipient),
        "recipients_more_than_once": sorted(e for e, n in per_recipient.items() if n > 1),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; prints the base URL on stdout first."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        faults = FaultConfig(
            rate_429=args.rate_429,
            rate_500=args.rate_500,
            rate_503=args.rate_503,
            rate_drop=args.rate_drop,
            rate_accept_drop=args.rate_accept_drop,
            rate_slow=args.rate_slow,
            slow_delay_s=args.slow_delay,
            rate_limit_limit=args.rate_limit_limit,
            rate_limit_reset_s=args.rate_limit_reset,
            affect_suppressions=args.faults_on_suppressions,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.verbose:
        logging.basicConfig(format="%(asctime)s %(message)s")
        logger.setLevel(logging.DEBUG)
    keys = args.keys or ["SG.test"]
    standin = SendGridStandIn(
        keys,
        forbidden_keys=args.forbidden_key,
        faults=faults,
        seed=args.seed,
        host=args.host,
        port=args.port,
        keep_content=not args.no_content,
    )
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked here, before the server thread starts (it inherits the mask), the two signals
    # wait for sigwait below instead of interrupting whatever runs.
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with standin:
            print(standin.url, flush=True)
            print(f"keys: {', '.join(keys)}; Ctrl-C to stop", file=sys.stderr, flush=True)
            signal.sigwait(stop_signals)
        if args.report:
            text = json.dumps(report(standin), indent=1)
            Path(args.report).write_text(text, encoding="utf-8")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)
    return 0
