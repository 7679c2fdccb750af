"""A local stand-in for SendGrid's v3 API, for tests, benchmarks and demos of the sender.

It serves, on 127.0.0.1 only:

* ``POST /v3/mail/send``: bearer-key check (401/403), JSON parsing, validation against the
  packaged schema plus SendGrid's extra rules (see :mod:`clvflow.delivery.standin_rules`), 413 for
  bodies of 30 MB or more, 202 with a unique ``X-Message-Id`` (200 and nothing delivered in
  sandbox mode). Every accepted request is recorded for inspection.
* ``GET /v3/suppression/{unsubscribes,bounces,spam_reports}`` (paged with ``limit``/``offset``)
  and ``GET /v3/asm/groups/{id}/suppressions``, seeded with :meth:`SendGridStandIn.add_suppression`.

Fault injection (:class:`FaultConfig`, changeable while running) produces 429s with rate-limit
headers, 500s, 503s, slow responses, dropped connections and "accepted, then dropped"
connections (the message is recorded, the client sees no reply: a real "maybe sent"). Faults
are drawn from a seeded RNG, two draws per mail-send request, so a sequential client sees the
same sequence for the same seed. They are decided before acceptance: a 429/5xx/drop records
nothing.

The server (:mod:`clvflow.delivery.standin_http`) speaks HTTP/1.1 with persistent
connections from one thread, requests framed by llhttp (the official client's
``Connection: close`` is honoured too)::

    with SendGridStandIn(api_keys={"SG.test"}, faults=FaultConfig(rate_429=0.1), seed=1) as sg:
        client = SendGridAPIClient("SG.test", host=sg.url)
        ...
        assert sg.deliveries_per_recipient()["ann@example.com"] == 1

Command line: ``python -m clvflow.delivery.standin --port 8025 --key SG.test --rate-429 0.1``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import random
import resource
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self

from clvflow.delivery.standin_faults import FaultConfig, Outcome
from clvflow.delivery.standin_http import LIST_KINDS, MAX_BODY_BYTES, StandInServer
from clvflow.delivery.standin_rules import mail_send_validator
from clvflow.heap import start_bulk_work

__all__ = [
    "MAX_BODY_BYTES",
    "AcceptedMessage",
    "FaultConfig",
    "SendGridStandIn",
    "SuppressionKind",
    "main",
    "personal_bodies",
]

logger = logging.getLogger(__name__)

SuppressionKind = Literal["unsubscribes", "bounces", "spam_reports", "asm_group"]


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """A mail-send request the stand-in accepted (treat ``body`` as read-only)."""

    message_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    """Request headers, names lower-cased, without ``authorization``."""
    api_key: str
    received_at: float
    sandbox: bool = False
    connection_dropped: bool = False
    """True when the reply was withheld on purpose (accept-then-drop fault)."""


def personal_bodies(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What SendGrid makes of a request: one body per personalization with its one ``to``
    list, its subject, headers and custom_args over the message's, and its
    ``substitutions`` put in place of their tags in the subject and the content."""
    shared = {k: v for k, v in body.items() if k != "personalizations"}
    out: list[dict[str, Any]] = []
    for pers in body.get("personalizations") or ():
        substitutions = pers.get("substitutions") or {}
        single = dict(shared)
        single["personalizations"] = [
            {k: v for k, v in pers.items() if k not in _PERSONAL_OVER_MESSAGE}
        ]
        for name in ("headers", "custom_args"):
            merged = {**(body.get(name) or {}), **(pers.get(name) or {})}
            if merged:
                single[name] = merged
        subject = pers.get("subject", body.get("subject"))
        if subject is not None:
            single["subject"] = _substituted(subject, substitutions)
        if "content" in body:
            single["content"] = [
                {**part, "value": _substituted(part["value"], substitutions)}
                for part in body["content"]
            ]
        out.append(single)
    return out


_PERSONAL_OVER_MESSAGE = frozenset({"subject", "headers", "custom_args", "substitutions"})


def _substituted(value: str, substitutions: Mapping[str, str]) -> str:
    for tag, text in substitutions.items():
        value = value.replace(tag, text)
    return value


class SendGridStandIn:
    """A SendGrid v3 stand-in on a free loopback port, run in a background thread.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`). All public methods are
    thread-safe and may be called while requests are being served.

    Args:
        api_keys: keys accepted as ``Authorization: Bearer <key>`` (a single ``str`` is one key).
        forbidden_keys: keys that authenticate but get 403 on mail send (unverified sender).
        faults: initial fault injection (none by default); see :meth:`set_faults`.
        seed: seed of the fault RNG (``None``: unseeded); :meth:`reset` re-seeds it.
        host: interface to bind; keep the loopback default.
        port: port to bind; 0 picks a free one.
        max_body_bytes: bodies of this size or more get 413.
        idle_timeout_s: a connection with no request activity this long is closed (idle
            between requests, or stalled while sending one; never while it is answered).
        clock: epoch-seconds clock for ``send_at`` checks, rate-limit resets and records.
        keep_content: record each accepted body whole; ``False`` drops its ``content``
            and its personalizations' ``substitutions`` (validated all the same) so a
            100,000-message benchmark stays small.
    """

    def __init__(
        self,
        api_keys: Iterable[str] | str = ("SG.test",),
        *,
        forbidden_keys: Iterable[str] | str = (),
        faults: FaultConfig | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
        idle_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        keep_content: bool = True,
    ) -> None:
        self._keys = frozenset([api_keys] if isinstance(api_keys, str) else api_keys)
        self._forbidden = frozenset(
            [forbidden_keys] if isinstance(forbidden_keys, str) else forbidden_keys
        )
        self._faults = faults or FaultConfig()
        self._seed = seed
        self._rng = random.Random(seed)
        self._bind = (host, port)
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.keep_content = keep_content
        self._id_prefix = base64.urlsafe_b64encode(uuid.uuid4().bytes[:9]).decode()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._accepted: list[AcceptedMessage] = []
        self._sandboxed: list[AcceptedMessage] = []
        self._statuses: Counter[int] = Counter()
        self._drops = 0
        self._suppressions: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in LIST_KINDS}
        self._groups: dict[int, dict[str, str]] = {}
        # each open connection → when it last saw request activity (inf: a request is being
        # answered, or the reaper has shut it)
        self._last_active: dict[socket.socket, float] = {}
        self._reaper: threading.Thread | None = None
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        mail_send_validator()  # compile the schema now, not on the first request

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stop_event.clear()
        self._server = StandInServer(self._bind, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sendgrid-standin:{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        self._reaper = threading.Thread(
            target=self._reap_idle, name="sendgrid-standin-reaper", daemon=True
        )
        self._reaper.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and the listening socket (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stop_event.set()
        server.shutdown()
        thread.join(timeout)
        if self._reaper is not None:
            self._reaper.join(timeout)
            self._reaper = None
        server.server_close()  # closes every connection the serving thread held
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def host(self) -> str:
        """The bound address."""
        return self._require_server().server_name

    @property
    def port(self) -> int:
        """The bound port (the free port picked when ``port=0``)."""
        return self._require_server().server_port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (pass it as ``host=`` to the client)."""
        return f"http://{self.host}:{self.port}"

    def _require_server(self) -> StandInServer:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; use start() or a with block")
        return self._server

    # -- faults -------------------------------------------------------------------------------
    @property
    def faults(self) -> FaultConfig:
        """The current fault configuration."""
        with self._lock:
            return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration; applies to the next request."""
        with self._lock:
            self._faults = faults

    def update_faults(self, **changes: Any) -> FaultConfig:
        """Change some fields of the fault configuration, e.g. ``update_faults(rate_429=0)``."""
        with self._lock:
            self._faults = dataclasses.replace(self._faults, **changes)
            return self._faults

    def _draw_fault(self) -> tuple[FaultConfig, Outcome, bool]:
        with self._lock:
            faults = self._faults
            u, v = self._rng.random(), self._rng.random()
        return faults, faults.outcome(u), v < faults.rate_slow

    # -- keys ---------------------------------------------------------------------------------
    def _known_key(self, key: str) -> bool:
        return key in self._keys or key in self._forbidden

    def _is_forbidden(self, key: str) -> bool:
        return key in self._forbidden

    # -- records ------------------------------------------------------------------------------
    def _record(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        key: str,
        *,
        sandbox: bool,
        dropped: bool,
    ) -> str:
        # unique per stand-in: a random prefix and a counter (a uuid4 per request costs a
        # urandom call, and with it a GIL hand-over, on every request)
        message_id = f"{self._id_prefix}.{next(self._ids):x}"
        if not self.keep_content:  # long runs: keep who and why, not the (large) parts
            body = {k: v for k, v in body.items() if k != "content"}
            body["personalizations"] = [
                {k: v for k, v in pers.items() if k != "substitutions"}
                if "substitutions" in pers
                else pers
                for pers in body["personalizations"]
            ]
        record = AcceptedMessage(
            message_id, body, headers, key, self.clock(), sandbox, connection_dropped=dropped
        )
        with self._lock:
            (self._sandboxed if sandbox else self._accepted).append(record)
        return message_id

    def _count_status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def _count_drop(self) -> None:
        with self._lock:
            self._drops += 1

    def accepted(self) -> list[AcceptedMessage]:
        """Messages accepted for delivery, in arrival order (sandbox-mode ones excluded)."""
        with self._lock:
            return list(self._accepted)

    def deliveries(self, *, sandbox: bool = False) -> list[AcceptedMessage]:
        """Every email accepted for delivery (``sandbox``: validated in sandbox mode), one
        per personalization, as SendGrid makes them (:func:`personal_bodies`): a request
        for many recipients shows as many, each with the request's message id."""
        return [
            dataclasses.replace(message, body=body)
            for message in (self.sandboxed() if sandbox else self.accepted())
            for body in personal_bodies(message.body)
        ]

    def sandboxed(self) -> list[AcceptedMessage]:
        """Valid messages sent in sandbox mode (answered 200, not delivered)."""
        with self._lock:
            return list(self._sandboxed)

    def deliveries_per_recipient(self, *, include_cc_bcc: bool = False) -> Counter[str]:
        """How many accepted messages each address received, keyed by lower-cased email.

        Counts every personalization's ``to`` (and ``cc``/``bcc`` if asked) of every
        accepted message, so a recipient sent twice shows 2.
        """
        kinds = ("to", "cc", "bcc") if include_cc_bcc else ("to",)
        counts: Counter[str] = Counter()
        for message in self.accepted():
            for pers in message.body["personalizations"]:
                for kind in kinds:
                    for rcpt in pers.get(kind) or ():
                        counts[str(rcpt["email"]).strip().lower()] += 1
        return counts

    def status_counts(self) -> Counter[int]:
        """Replies sent, by HTTP status code (dropped connections are not replies)."""
        with self._lock:
            return Counter(self._statuses)

    def dropped_connections(self) -> int:
        """Connections closed without a reply (drop and accept-then-drop faults)."""
        with self._lock:
            return self._drops

    def reset(self) -> None:
        """Forget recorded messages and counters and re-seed the fault RNG.

        Fault settings and seeded suppressions are kept (see :meth:`clear_suppressions`).
        """
        with self._lock:
            self._accepted.clear()
            self._sandboxed.clear()
            self._statuses.clear()
            self._drops = 0
            self._rng.seed(self._seed)

    # -- suppressions -------------------------------------------------------------------------
    def add_suppression(
        self,
        kind: SuppressionKind,
        email: str,
        *,
        created: int | None = None,
        reason: str | None = None,
        status: str | None = None,
        ip: str | None = None,
        group_id: int | None = None,
    ) -> None:
        """Seed a suppression served by the GET endpoints.

        ``kind`` is ``"unsubscribes"``, ``"bounces"``, ``"spam_reports"`` (global lists, one
        entry per address: adding again replaces it) or ``"asm_group"`` (needs ``group_id``).
        Bounces get a default ``reason``/``status``, spam reports a default ``ip``.
        """
        if kind == "asm_group":
            if group_id is None:
                raise ValueError("group_id is required for asm_group suppressions")
            with self._lock:
                self._groups.setdefault(group_id, {})[email.lower()] = email
            return
        if kind not in LIST_KINDS:
            raise ValueError(f"unknown suppression kind {kind!r}")
        entry: dict[str, Any] = {
            "created": int(self.clock()) if created is None else created,
            "email": email,
        }
        if kind == "bounces":
            entry["reason"] = reason or (
                "550 5.1.1 The email account that you tried to reach does not exist."
            )
            entry["status"] = status or "5.1.1"
        elif kind == "spam_reports":
            entry["ip"] = ip or "127.0.0.1"
        with self._lock:
            bucket = self._suppressions[kind]
            bucket.pop(email.lower(), None)
            bucket[email.lower()] = entry

    def clear_suppressions(self) -> None:
        """Remove every seeded suppression."""
        with self._lock:
            for bucket in self._suppressions.values():
                bucket.clear()
            self._groups.clear()

    def _suppression_page(
        self, kind: str, limit: int, offset: int, start: int | None, end: int | None
    ) -> list[dict[str, Any]]:
        with self._lock:
            entries = [dict(e) for e in self._suppressions[kind].values()]
        if start is not None:
            entries = [e for e in entries if e["created"] >= start]
        if end is not None:
            entries = [e for e in entries if e["created"] <= end]
        return entries[offset : offset + limit]

    def _group_suppressions(self, group_id: int) -> list[str]:
        with self._lock:
            return list(self._groups.get(group_id, {}).values())

    # -- connections --------------------------------------------------------------------------
    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._last_active[conn] = time.monotonic()

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._last_active.pop(conn, None)

    def _active(self, conn: socket.socket, *, busy: bool = False) -> None:
        """A request started or ended on ``conn`` (``busy``: it is being answered)."""
        with self._lock:
            if conn in self._last_active:
                self._last_active[conn] = math.inf if busy else time.monotonic()

    def _reap_idle(self) -> None:
        """Close connections without request activity for ``idle_timeout_s``: shut down,
        a connection reads as ended on the serving thread, which closes it."""
        interval = min(1.0, max(0.01, self.idle_timeout_s / 4))
        while not self._stop_event.wait(interval):
            cutoff = time.monotonic() - self.idle_timeout_s
            with self._lock:
                idle = [conn for conn, at in self._last_active.items() if at < cutoff]
                for conn in idle:
                    self._last_active[conn] = math.inf  # shut once; closing unregisters it
            for conn in idle:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clvflow.delivery.standin",
        description="Run a local SendGrid v3 stand-in in the foreground (Ctrl-C to stop).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8025, help="port (0 picks a free one)")
    p.add_argument("--key", action="append", dest="keys", help="accepted API key (repeatable)")
    p.add_argument("--forbidden-key", action="append", default=[], help="key answered with 403")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    for name in ("429", "500", "503", "drop", "accept-drop", "slow"):
        p.add_argument(f"--rate-{name}", type=float, default=0.0, metavar="P")
    p.add_argument("--slow-delay", type=float, default=0.5, metavar="SECONDS")
    p.add_argument("--rate-limit-limit", type=int, default=600, metavar="N")
    p.add_argument("--rate-limit-reset", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--faults-on-suppressions", action="store_true")
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
    """Command-line entry: serve until interrupted; prints the base URL on stdout."""
    parser = _parser()
    args = parser.parse_args(argv)
    start_bulk_work()  # a server process of its own: it keeps every accepted request
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
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
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
    with standin as sg:
        print(sg.url, flush=True)
        print(f"keys: {', '.join(keys)}; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    if args.report:
        Path(args.report).write_text(json.dumps(report(standin), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
