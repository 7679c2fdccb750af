"""The stand-in's HTTP side: a threaded HTTP/1.1 server with persistent connections, a lean
request parser, and the SendGrid endpoints (mail send, suppression lists).

The state (keys, faults, records, suppressions) lives in
:class:`clvflow.delivery.standin.SendGridStandIn`; this module only speaks HTTP.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import socketserver
import sys
import time
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson

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


class StandInServer(ThreadingHTTPServer):
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
    rbufsize = 1 << 16  # a whole request in one read (the default 8 KiB takes two or more)
    server: StandInServer
    raw_requestline: bytes
    fields: dict[str, str]
    """Request headers, names lower-cased (repeated headers joined with ", ")."""

    # -- connection bookkeeping -------------------------------------------------------------
    # No socket timeout: with one, CPython polls before every read and write (twice the
    # system calls, and a GIL hand-over each). Idle connections are closed by the stand-in's
    # reaper instead (``SendGridStandIn._reap_idle``).
    def setup(self) -> None:
        super().setup()
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
        self.server.standin._active(self.connection)  # a request is coming in
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
            sg._active(self.connection, busy=True)  # read whole: never idle while it is answered
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
        self.server.standin._active(self.connection)  # idle from now until the next request
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
