"""The stand-in's HTTP side: an HTTP/1.1 server with persistent connections, served from one
thread (a selector; requests framed by llhttp through ``httptools``), and the SendGrid
endpoints (mail send, suppression lists).

Framing errors get their status before the connection closes: 400 (malformed), 413 (a body
of ``max_body_bytes`` or more; a declared one up to 256 MB is read to its end and the
connection kept), 414, 431, 501 (a transfer coding other than chunked, an unknown method).

The state (keys, faults, records, suppressions) lives in
:class:`clvflow.delivery.standin.SendGridStandIn`; this module only speaks HTTP.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import json
import logging
import math
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import httptools
import orjson

from clvflow.delivery.connections import write_all
from clvflow.delivery.standin_faults import Outcome
from clvflow.delivery.standin_rules import SendGridError, validate_mail_send

if TYPE_CHECKING:
    from clvflow.delivery.standin import SendGridStandIn

logger = logging.getLogger("clvflow.delivery.standin")

MAX_BODY_BYTES: Final = 30 * 1024 * 1024
"""Bodies of this size or more get 413 (SendGrid: "the whole message must be under 30 MB")."""
MAX_SUPPRESSION_PAGE: Final = 500
LIST_KINDS: Final[tuple[str, ...]] = ("unsubscribes", "bounces", "spam_reports")
_DRAIN_LIMIT: Final = 256 * 1024 * 1024
_READ_CHUNK: Final = 1 << 16
_MAX_LINE: Final = 65536
_MAX_HEADERS: Final = 100
_WRITE_TIMEOUT: Final = 30.0
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

_UNAUTHORIZED: Final = "The provided authorization grant is invalid, expired, or revoked"
_FORBIDDEN: Final = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until "
    "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
    "sender-identity/ to see the Sender Identity requirements"
)


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


class StandInServer:
    """One thread serves every connection: a selector reads whatever arrives, llhttp
    (``httptools``) frames the requests, and each complete request is answered in turn.

    A thread per connection made the stand-in's threads fight over the GIL: with 8
    kept-alive connections a request cost about 12 futex calls and half again the CPU of
    the same request on one connection. A slow answer (a ``rate_slow`` fault) is a timer:
    the request is handled at once, its reply written when the delay is over, and its
    connection is not read meanwhile, so a delay holds up nobody else."""

    def __init__(self, address: tuple[str, int], standin: SendGridStandIn) -> None:
        self.standin = standin
        self.socket = socket.create_server(address, backlog=128)
        self.socket.setblocking(False)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        # a heap, by due time: (due, order, action, its connection)
        self._timers: list[tuple[float, int, Callable[[], None], _Connection]] = []
        self._timer_ids = itertools.count()
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        try:
            while not self._stopping:
                timeout = poll_interval
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._accept()
                    elif key.data is self._wake_r:
                        self._drain_wake()
                    else:
                        self._guarded(key.data, key.data.readable)
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, action, connection = heapq.heappop(self._timers)
                    self._guarded(connection, action)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the serving loop and wait for it to end."""
        self._stopping = True
        self.wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for connection in list(self._connections):
            connection.close()
        self._selector.close()
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def later(self, delay: float, connection: _Connection, action: Callable[[], None]) -> None:
        """Run ``action`` (for ``connection``) on the serving thread ``delay`` s from now."""
        due = time.monotonic() + delay
        heapq.heappush(self._timers, (due, next(self._timer_ids), action, connection))

    def _guarded(self, connection: _Connection, action: Callable[[], None]) -> None:
        """A bug met while serving one connection ends that connection, not the server."""
        try:
            action()
        except Exception:
            logger.exception("stand-in failed serving a connection; it is closed")
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("accept failed: %r", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, sock)
            self._connections.add(connection)
            self.standin._register(sock)
            self.listen(connection)

    def listen(self, connection: _Connection) -> None:
        self._selector.register(connection.sock, selectors.EVENT_READ, connection)

    def pause(self, connection: _Connection) -> None:
        self._selector.unregister(connection.sock)

    def forget(self, connection: _Connection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        self._connections.discard(connection)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass


@dataclass
class _Request:
    """One framed request: what the handlers read."""

    command: str
    path: str
    version: str
    fields: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes
    close_connection: bool
    too_large: int | None = None  # a declared body length read to its end and not kept

    @property
    def requestline(self) -> str:
        return f"{self.command} {self.path} {self.version}"


class _Connection:
    """One client connection: llhttp's callbacks collect each request, then it is answered."""

    def __init__(self, server: StandInServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.open = True
        self.ready: deque[_Request] = deque()
        self.fatal: _Reply | None = None  # answer this, then close
        self.held = False  # a reply is due later: nothing more is read or answered till then
        self._close_after = False  # close once the held reply is written
        self.parser = httptools.HttpRequestParser(self)
        self._begin()

    # -- llhttp's callbacks -------------------------------------------------------------------
    def _begin(self) -> None:
        self._url: list[bytes] = []
        self._fields: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._too_large: int | None = None  # the declared length, answered 413 at the end

    def on_message_begin(self) -> None:
        self._begin()
        self.server.standin._active(self.sock)  # a request is coming in

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        if sum(map(len, self._url)) > _MAX_LINE:
            self._fail(_Reply(414, "Request-URI too long", close=True))

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._fields) >= _MAX_HEADERS or len(name) + len(value) > _MAX_LINE:
            self._fail(_Reply(431, "Request header fields too large", close=True))
            return
        key = name.decode("iso-8859-1").strip().lower()
        text = value.decode("iso-8859-1").strip()
        known = self._fields.get(key)
        self._fields[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        fields, limit = self._fields, self.server.standin.max_body_bytes
        encoding = fields.get("transfer-encoding")
        if encoding is not None and encoding.strip().lower() != "chunked":
            self._fail(_Reply(501, f"Transfer-Encoding {encoding!r} not supported", close=True))
            return
        declared = fields.get("content-length", "").strip()
        length = int(declared) if declared.isdigit() else 0
        if length >= limit:
            if length > _DRAIN_LIMIT:
                self._fail(_Reply(413, "The request body is too large.", close=True))
                return
            self._too_large = length  # read it to the end, keep none of it
        elif fields.get("expect", "").lower() == "100-continue":
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large is not None or self.fatal is not None:
            return
        self._size += len(body)
        if self._size >= self.server.standin.max_body_bytes:
            self._fail(_Reply(413, "The request body is too large.", close=True))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.fatal is not None:
            return
        parser = self.parser
        request = _Request(
            command=parser.get_method().decode("ascii", "replace"),
            path=b"".join(self._url).decode("iso-8859-1"),
            version=f"HTTP/{parser.get_http_version()}",
            fields=self._fields,
            body=b"".join(self._body),
            close_connection=not parser.should_keep_alive(),
            too_large=self._too_large,
        )
        self.ready.append(request)

    def _fail(self, reply: _Reply) -> None:
        if self.fatal is None:
            self.fatal = reply

    # -- reading and answering ------------------------------------------------------------------
    def readable(self) -> None:
        try:
            data = self.sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_Reply(400, f"Malformed request: {exc}", close=True))
        self.answer_ready()

    def answer_ready(self) -> None:
        """Answer the requests framed so far, in order; then the fatal error, if any."""
        while self.open and self.ready and not self.held:
            request = self.ready.popleft()
            _Exchange(self, request).handle()
            if request.close_connection:
                if self.held:
                    self._close_after = True
                else:
                    self.close()
        if self.open and not self.held and self.fatal is not None and not self.ready:
            reply, self.fatal = self.fatal, None
            _Exchange(self, None).error_reply(reply)
            self.close()

    def respond(self, data: bytes | None, delay: float = 0.0) -> None:
        """Write a reply (None: close without one), now or ``delay`` seconds from now."""
        if delay <= 0:
            if data is None:
                self.close()
            else:
                self._send(data)
                self.server.standin._active(self.sock)  # idle until the next request
            return
        self.held = True
        self.server.pause(self)
        self.server.later(delay, self, lambda: self._release(data))

    def _release(self, data: bytes | None) -> None:
        self.held = False
        if not self.open:
            return
        try:
            self.respond(data)
        except OSError:
            self.close()
        if not self.open:
            return
        if self._close_after:
            self.close()
            return
        self.server.listen(self)
        self.answer_ready()

    def _send(self, data: bytes) -> None:
        write_all(self.sock, data, _WRITE_TIMEOUT)

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.server.forget(self)
        self.server.standin._unregister(self.sock)
        with contextlib.suppress(OSError):
            self.sock.close()


class _Exchange:
    """One request and its reply: the SendGrid endpoints."""

    server_version = "clvflow-sendgrid-standin/1"

    def __init__(self, connection: _Connection, request: _Request | None) -> None:
        self.connection = connection
        self.sg = connection.server.standin
        self.request = request
        self.requestline = "-" if request is None else request.requestline
        self.delay = 0.0  # a slow answer: the reply waits this long
        self.fields = {} if request is None else request.fields

    @property
    def close_connection(self) -> bool:
        return self.request is None or self.request.close_connection

    def _close_after_reply(self) -> None:
        if self.request is not None:
            self.request.close_connection = True

    def handle(self) -> None:
        assert self.request is not None
        request, sg = self.request, self.sg
        try:
            sg._active(self.connection.sock, busy=True)  # read whole: never idle while answered
            method = request.command
            if method not in _METHODS:
                raise _Reply(501, f"Unsupported method {method!r}")
            if request.too_large is not None:
                raise _Reply(
                    413,
                    f"The request body ({request.too_large} bytes) is too large; it must be "
                    f"under {sg.max_body_bytes} bytes.",
                )
            url = urlsplit(request.path)
            path = url.path.rstrip("/")
            if path == "/v3/mail/send":
                if method != "POST":
                    raise _Reply(405, f"Method {method} not allowed on {path}")
                self._mail_send(sg, request.body)
            elif (kind := _suppression_kind(path)) is not None:
                if method != "GET":
                    raise _Reply(405, f"Method {method} not allowed on {path}")
                self._suppressions(sg, kind, path, url.query)
            else:
                raise _Reply(404, f"No route for {method} {path}")
        except _Reply as reply:
            self.error_reply(reply)
        except _Drop:
            self._close_after_reply()
            sg._count_drop()
            if self.delay > 0:
                self.connection.respond(None, self.delay)
        except OSError as exc:  # the client went away
            logger.debug("connection ended: %r", exc)
            self._close_after_reply()
        except Exception:  # a bug in the stand-in: answer 500 like a real server, and log it
            logger.exception("stand-in failed on %r", self.requestline)
            self._close_after_reply()
            error = SendGridError("stand-in internal error (see its log)")
            body = json.dumps({"errors": [error.as_json()]}).encode()
            self._reply(500, body, (), "application/json")

    def error_reply(self, reply: _Reply) -> None:
        if reply.close:
            self._close_after_reply()
        body = json.dumps({"errors": [e.as_json() for e in reply.errors]}).encode()
        try:
            self._reply(reply.status, body, reply.headers, "application/json")
        except OSError as exc:
            logger.debug("connection ended: %r", exc)
            self._close_after_reply()

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
        self.sg._count_status(status)  # before the client can see the reply
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.connection.respond(head + body, self.delay)
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

    def _apply_faults(self, sg: SendGridStandIn) -> Outcome:
        faults, outcome, slow = sg._draw_fault()
        if slow:
            self.delay = faults.slow_delay_s  # the reply (or the drop) waits
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
            body = orjson.loads(raw)  # strict JSON: NaN, Infinity, lone surrogates are errors
        except orjson.JSONDecodeError as exc:
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


def _suppression_kind(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) == 4 and parts[:3] == ["", "v3", "suppression"] and parts[3] in LIST_KINDS:
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
