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

The server is ``http.server.ThreadingHTTPServer`` speaking HTTP/1.1 with persistent
connections (the official client's ``Connection: close`` is honoured too)::

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
import email.utils
import json
import logging
import math
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qs, urlsplit

from clvflow.delivery.standin_rules import SendGridError, mail_send_validator, validate_mail_send

__all__ = [
    "MAX_BODY_BYTES",
    "AcceptedMessage",
    "FaultConfig",
    "SendGridStandIn",
    "SuppressionKind",
    "main",
]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 30 * 1024 * 1024
"""Bodies of this size or more get 413 (SendGrid: "the whole message must be under 30 MB")."""
MAX_SUPPRESSION_PAGE: Final = 500
_DRAIN_LIMIT: Final = 256 * 1024 * 1024
_READ_CHUNK: Final = 1 << 16
_MAX_LINE: Final = 65536
_MAX_HEADERS: Final = 100

SuppressionKind = Literal["unsubscribes", "bounces", "spam_reports", "asm_group"]
_LIST_KINDS: Final[tuple[str, ...]] = ("unsubscribes", "bounces", "spam_reports")
_Outcome = Literal["ok", "drop", "accept_drop", "429", "500", "503"]

_UNAUTHORIZED: Final = "The provided authorization grant is invalid, expired, or revoked"
_FORBIDDEN: Final = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until "
    "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
    "sender-identity/ to see the Sender Identity requirements"
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault-injection settings; rates are probabilities per request, in [0, 1].

    ``rate_drop``, ``rate_accept_drop``, ``rate_429``, ``rate_500`` and ``rate_503`` are
    mutually exclusive outcomes (their sum must not exceed 1); ``rate_slow`` is drawn
    independently and delays any reply (including faults) by ``slow_delay_s``.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    """Read the request, then close the connection without replying; nothing is recorded."""
    rate_accept_drop: float = 0.0
    """Record a valid message as delivered, then close without replying ("maybe sent")."""
    rate_slow: float = 0.0
    slow_delay_s: float = 0.5
    rate_limit_limit: int = 600
    """Value of ``X-RateLimit-Limit`` on 429 replies."""
    rate_limit_reset_s: float = 1.0
    """``X-RateLimit-Reset`` on 429 replies is ``ceil(now + rate_limit_reset_s)`` (epoch s)."""
    affect_suppressions: bool = False
    """Also apply faults to the suppression GET endpoints (accept-drop acts as a drop)."""

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_500", "rate_503", "rate_drop", "rate_accept_drop"):
            _check_rate(name, getattr(self, name))
        _check_rate("rate_slow", self.rate_slow)
        if self.exclusive_total() > 1.0 + 1e-9:
            raise ValueError("rate_drop + rate_accept_drop + rate_429/500/503 must be <= 1")
        if self.slow_delay_s < 0 or self.rate_limit_reset_s < 0:
            raise ValueError("slow_delay_s and rate_limit_reset_s must be >= 0")
        if self.rate_limit_limit < 1:
            raise ValueError("rate_limit_limit must be >= 1")

    def exclusive_total(self) -> float:
        """Sum of the mutually exclusive fault rates."""
        return (
            self.rate_drop + self.rate_accept_drop + self.rate_429 + self.rate_500 + self.rate_503
        )

    def outcome(self, u: float) -> _Outcome:
        """The outcome for a uniform draw ``u`` in [0, 1)."""
        edge = 0.0
        for name, rate in (
            ("drop", self.rate_drop),
            ("accept_drop", self.rate_accept_drop),
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("503", self.rate_503),
        ):
            edge += rate
            if u < edge:
                return name  # type: ignore[return-value]
        return "ok"


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


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


class _Reply(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside the handler to send an error reply right away."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        field: str | None = None,
        *,
        errors: Sequence[SendGridError] = (),
        headers: Sequence[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.errors = list(errors) or [SendGridError(message or HTTPStatus(status).phrase, field)]
        self.headers = headers
        self.close = close


class _Drop(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside the handler to close the connection without replying."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], standin: SendGridStandIn) -> None:
        self.standin = standin
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.standin.stopping:
            logger.debug("connection from %s ended: %r", client_address, exc)
            return
        logger.exception("stand-in error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clvflow-sendgrid-standin/1"
    disable_nagle_algorithm = True
    server: _Server
    raw_requestline: bytes
    fields: dict[str, str]
    """Request headers, names lower-cased (repeated headers joined with ", ")."""

    # -- connection bookkeeping -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.standin.idle_timeout_s)
        self.server.standin._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    # -- request parsing ----------------------------------------------------------------------
    # The stdlib parses headers with the email package (~100 us per request, a third of the
    # stand-in's time). Plain "METHOD PATH HTTP/1.x" requests are parsed here into a dict of
    # lower-cased names; anything unusual goes to the stdlib parser.
    def parse_request(self) -> bool:
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        parts = line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
            if not super().parse_request():
                return False
            self.fields = {k.lower(): v for k, v in self.headers.items()}
            return True
        self.requestline = line
        self.command, self.path, self.request_version = parts
        self.close_connection = True
        fields: dict[str, str] = {}
        last = ""
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if len(raw) > _MAX_LINE:
                self.send_error(431, "Line too long")
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            text = raw.decode("iso-8859-1")
            if text[0] in " \t" and last:  # obsolete line folding
                fields[last] += " " + text.strip()
                continue
            name, sep, value = text.partition(":")
            name = name.strip().lower()
            if not sep or not name:
                self.send_error(400, "Malformed header line")
                return False
            value = value.strip()
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
            last = name
        else:
            self.send_error(431, "Too many headers")
            return False
        self.fields = fields
        connection = fields.get("connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = connection == "close"
        else:
            self.close_connection = connection != "keep-alive"
        if (
            fields.get("expect", "").lower() == "100-continue"
            and self.request_version == "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    # -- dispatch -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        sg = self.server.standin
        try:
            raw = self._read_body(sg.max_body_bytes)
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            if path == "/v3/mail/send":
                if method != "POST":
                    raise _Reply(405, f"Method {method} not allowed on {path}")
                self._mail_send(sg, raw)
            elif (kind := _suppression_kind(path)) is not None:
                if method != "GET":
                    raise _Reply(405, f"Method {method} not allowed on {path}")
                self._suppressions(sg, kind, path, url.query)
            else:
                raise _Reply(404, f"No route for {method} {path}")
        except _Reply as reply:
            if reply.close:
                self.close_connection = True
            body = json.dumps({"errors": [e.as_json() for e in reply.errors]}).encode()
            self._reply(reply.status, body, reply.headers, "application/json")
        except _Drop:
            self.close_connection = True
            sg._count_drop()
        except OSError:
            raise  # the client went away; socketserver closes the connection
        except Exception:  # a bug in the stand-in: answer 500 like a real server, and log it
            logger.exception("stand-in failed on %r", self.requestline)
            self.close_connection = True
            error = SendGridError("stand-in internal error (see its log)")
            body = json.dumps({"errors": [error.as_json()]}).encode()
            self._reply(500, body, (), "application/json")

    # -- request body -------------------------------------------------------------------------
    def _read_body(self, limit: int) -> bytes:
        encoding = self.fields.get("transfer-encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _Reply(501, f"Transfer-Encoding {encoding!r} not supported", close=True)
            return self._read_chunked(limit)
        length_header = self.fields.get("content-length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            raise _Reply(400, "Invalid Content-Length header", close=True) from None
        if length >= limit:
            self._drain(length)
            raise _Reply(
                413,
                f"The request body ({length} bytes) is too large; it must be under {limit} bytes.",
            )
        data = self.rfile.read(length)
        if len(data) != length:
            raise _Drop
        return data

    def _drain(self, length: int) -> None:
        if length > _DRAIN_LIMIT:
            raise _Reply(413, "The request body is too large.", close=True)
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, _READ_CHUNK))
            if not chunk:
                raise _Drop
            left -= len(chunk)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Reply(400, "Malformed chunked body", close=True) from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total >= limit:
                raise _Reply(413, "The request body is too large.", close=True)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)

    # -- replies -----------------------------------------------------------------------------
    def _reply(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> None:
        # One write per response (status line, headers and body together): no Nagle stalls.
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
            f"Content-Length: {len(body)}",
        ]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        self.server.standin._count_status(status)  # before the client can see the reply
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        logger.debug('"%s" %d', self.requestline, status)

    def _authenticate(self, sg: SendGridStandIn) -> str:
        header = self.fields.get("authorization")
        if not header:
            raise _Reply(401, "authorization required")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not sg._known_key(key):
            raise _Reply(401, _UNAUTHORIZED)
        return key

    def _apply_faults(self, sg: SendGridStandIn) -> _Outcome:
        faults, outcome, slow = sg._draw_fault()
        if slow:
            sg._stop_event.wait(faults.slow_delay_s)
        if outcome == "drop":
            raise _Drop
        if outcome == "429":
            reset = math.ceil(sg.clock() + faults.rate_limit_reset_s)
            raise _Reply(
                429,
                "too many requests",
                headers=(
                    ("X-RateLimit-Limit", str(faults.rate_limit_limit)),
                    ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", str(reset)),
                ),
            )
        if outcome == "500":
            raise _Reply(500, "internal server error")
        if outcome == "503":
            raise _Reply(503, "service unavailable")
        return outcome

    # -- endpoints ---------------------------------------------------------------------------
    def _mail_send(self, sg: SendGridStandIn, raw: bytes) -> None:
        key = self._authenticate(sg)
        outcome = self._apply_faults(sg)
        media_type = self.fields.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise _Reply(415, "Content-Type should be application/json.")
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            raise _Reply(400, f"Bad Request: the body is not valid JSON ({exc}).") from None
        errors = validate_mail_send(body, sg.clock())
        if errors:
            raise _Reply(400, errors=errors)
        if sg._is_forbidden(key):
            raise _Reply(403, _FORBIDDEN, "from")
        settings = body.get("mail_settings") or {}
        sandbox = (settings.get("sandbox_mode") or {}).get("enable") is True
        headers = {k: v for k, v in self.fields.items() if k != "authorization"}
        dropped = outcome == "accept_drop" and not sandbox
        message_id = sg._record(body, headers, key, sandbox=sandbox, dropped=dropped)
        if dropped:
            raise _Drop
        self._reply(200 if sandbox else 202, b"", (("X-Message-Id", message_id),))

    def _suppressions(self, sg: SendGridStandIn, kind: str, path: str, query: str) -> None:
        self._authenticate(sg)
        if sg.faults.affect_suppressions and self._apply_faults(sg) == "accept_drop":
            raise _Drop  # nothing to accept on a read: a plain drop
        params = parse_qs(query, keep_blank_values=True)
        if kind == "asm_group":
            group = path.split("/")[4]
            if not group.isdigit():
                raise _Reply(404, f"Unknown suppression group {group!r}")
            payload: Any = sg._group_suppressions(int(group))
        else:
            limit = _int_param(params, "limit", 1, MAX_SUPPRESSION_PAGE)
            offset = _int_param(params, "offset", 0, None)
            start = _int_param(params, "start_time", 0, None)
            end = _int_param(params, "end_time", 0, None)
            payload = sg._suppression_page(
                kind,
                MAX_SUPPRESSION_PAGE if limit is None else limit,
                offset or 0,
                start,
                end,
            )
        self._reply(200, json.dumps(payload).encode(), (), "application/json")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header value, formatted at most once per second."""
    global _date_cache  # noqa: PLW0603 - a benign per-second cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _suppression_kind(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) == 4 and parts[:3] == ["", "v3", "suppression"] and parts[3] in _LIST_KINDS:
        return parts[3]
    if len(parts) == 6 and parts[:4] == ["", "v3", "asm", "groups"] and parts[5] == "suppressions":
        return "asm_group"
    return None


def _int_param(params: dict[str, list[str]], name: str, low: int, high: int | None) -> int | None:
    """An integer query parameter within [low, high], or None when absent; 400 otherwise."""
    values = params.get(name)
    if not values:
        return None
    try:
        value = int(values[-1])
    except ValueError:
        raise _Reply(400, f"{name} must be an integer", name) from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _Reply(400, f"{name} must be {bound}", name)
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
        idle_timeout_s: a kept-alive connection idle this long is closed.
        clock: epoch-seconds clock for ``send_at`` checks, rate-limit resets and records.
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
        self._lock = threading.Lock()
        self._accepted: list[AcceptedMessage] = []
        self._sandboxed: list[AcceptedMessage] = []
        self._statuses: Counter[int] = Counter()
        self._drops = 0
        self._suppressions: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in _LIST_KINDS}
        self._groups: dict[int, dict[str, str]] = {}
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self.stopping = False
        mail_send_validator()  # compile the schema now, not on the first request

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._stop_event.clear()
        self.stopping = False
        self._server = _Server(self._bind, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sendgrid-standin:{self._server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and the listening socket (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.stopping = True
        self._stop_event.set()
        server.shutdown()
        thread.join(timeout)
        with self._lock:
            open_connections = list(self._connections.items())
        for conn, _ in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        deadline = time.monotonic() + timeout
        for _, handler_thread in open_connections:
            handler_thread.join(max(0.0, deadline - time.monotonic()))
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

    def _require_server(self) -> _Server:
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

    def _draw_fault(self) -> tuple[FaultConfig, _Outcome, bool]:
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
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
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
        if kind not in _LIST_KINDS:
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
            self._connections[conn] = threading.current_thread()
        if self.stopping:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)


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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: serve until interrupted; prints the base URL on stdout."""
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
    )
    with standin as sg:
        print(sg.url, flush=True)
        print(f"keys: {', '.join(keys)}; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
