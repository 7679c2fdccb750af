"""Many requests over a few kept-alive HTTP/1.1 connections, from one thread.

:class:`Connections` keeps up to ``size`` connections to one host open, writes a request on
whichever is free and waits for all replies at once with a selector. One thread does what a
pool of threads did before (bench/README.md, "send"): no GIL hand-over between threads per
request, and hundreds of connections (a real round trip to the API needs them) cost no
more than a few.

The caller owns the policy: it starts a request with :meth:`Connections.start` and gets
each outcome from :meth:`Connections.wait` as a :class:`Done` (a reply, or the reason there
is none). What this module guarantees:

- a request that could not be written whole raises :class:`NotSentError` from ``start``
  (nothing reached the server: safe to retry);
- a request written whole that got no complete reply (timeout, reset, a close, a malformed
  reply) comes back with ``error`` set: it may have been delivered;
- a connection the server closed while it was idle is replaced before it is used again,
  never written to (``start`` polls first when the selector has not just been read).
"""

from __future__ import annotations

import contextlib
import http.client
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from clvflow.delivery.reply import Reply, ReplyError, ReplyReader
from clvflow.errors import DeliveryError

_READ = 65536
# a start this soon after the selector was read trusts what it said about idle connections
_FRESH_SECONDS = 0.001


class NotSentError(Exception):
    """The request never left completely (refused, or the write failed): safe to retry."""


@dataclass(frozen=True, slots=True)
class Done:
    """One request's end: ``reply``, or ``error`` (written whole, no reply: maybe sent)."""

    tag: Any
    reply: Reply | None = None
    error: str | None = None


class Host:
    """Where requests go: scheme, host, port and path prefix of ``api_host``, and each
    request's header block (built once per path and header set)."""

    def __init__(self, api_host: str, timeout: float) -> None:
        url = urlsplit(api_host.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise DeliveryError(
                f"delivery.sendgrid.api_host is '{api_host}'",
                hint="use a URL such as https://api.sendgrid.com (or set SENDGRID_API_HOST)",
            )
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port
        self.prefix = url.path
        self.timeout = timeout
        default_port = 443 if url.scheme == "https" else 80
        netloc = self.host if self.port in (None, default_port) else f"{self.host}:{self.port}"
        self._host_header = f"[{netloc}]" if ":" in self.host else netloc
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        """``POST`` line and headers up to ``Content-Length: ``; refuses CR, LF and NUL."""
        key = (path, tuple(headers.items()))
        head = self._heads.get(key)
        if head is None:
            lines = [f"POST {self.prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
            for name, value in headers.items():
                if any(ch in name + value for ch in "\r\n\0") or ":" in name:
                    raise DeliveryError(
                        f"the request header {name!r} holds a line break",
                        hint="check SENDGRID_API_KEY for stray whitespace or newlines",
                    )
                lines.append(f"{name}: {value}")
            head = self._heads[key] = ("\r\n".join(lines) + "\r\nContent-Length: ").encode(
                "latin-1"
            )
        return head

    def connect(self) -> socket.socket:
        """A new connection (TLS for https); ``http.client`` sets TCP_NODELAY."""
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise NotSentError(f"cannot connect: {type(exc).__name__}: {exc}") from None
        assert conn.sock is not None
        sock: socket.socket = conn.sock
        # Non-blocking: the selector says when to read, so no read needs a timeout, and with
        # one CPython polls before every read and write (twice the system calls).
        sock.settimeout(0.0)
        return sock


def write_all(sock: socket.socket, data: bytes, timeout: float) -> None:
    """Write all of ``data`` on a non-blocking socket: at once if the socket takes it (a
    request or reply usually fits its buffer), else the rest with ``timeout`` per write.
    Raises OSError if it cannot."""
    try:
        sent = sock.send(data)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        sent = 0  # nothing was taken
    if sent < len(data):
        sock.settimeout(timeout)
        try:
            sock.sendall(memoryview(data)[sent:])
        finally:
            sock.settimeout(0.0)


class _Line:
    """One connection: its socket (None until used), and the request on it, if any."""

    __slots__ = ("deadline", "reader", "sock", "tag")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.tag: Any = None
        self.reader: ReplyReader | None = None
        self.deadline = 0.0


class Connections:
    """Up to ``size`` kept-alive connections to ``host`` and the requests on them."""

    def __init__(self, host: Host, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._lines = [_Line() for _ in range(max(1, size))]
        self._free = list(reversed(self._lines))
        self._busy = 0
        self._polled_at = -1.0  # when the selector was last read (idle closes are known)

    @property
    def free(self) -> int:
        """Connections that can take a request now."""
        return len(self._free)

    @property
    def busy(self) -> int:
        """Requests written and not yet answered."""
        return self._busy

    def start(self, tag: Any, path: str, body: bytes, headers: dict[str, str]) -> None:
        """Write one request on a free connection; its outcome comes from :meth:`wait`.
        Raises :class:`NotSentError` if it could not be written whole."""
        if self._clock() - self._polled_at > _FRESH_SECONDS:
            self._poll_idle()
        request = b"".join((self.host.head(path, headers), b"%d\r\n\r\n" % len(body), body))
        line = self._free[-1]
        if line.sock is None:
            line.sock = self.host.connect()  # NotSentError: the line stays free, unopened
            self._selector.register(line.sock, selectors.EVENT_READ, line)
        try:
            write_all(line.sock, request, self.host.timeout)
        except OSError as exc:
            self._close(line)
            raise NotSentError(f"cannot write the request: {type(exc).__name__}") from None
        self._free.pop()
        line.tag = tag
        line.reader = ReplyReader()
        line.deadline = self._clock() + self.host.timeout
        self._busy += 1

    def wait(self, timeout: float | None) -> list[Done]:
        """Outcomes of requests that ended within ``timeout`` seconds (None: until one
        does, or one times out; with no request out, None would wait for ever), replies and
        requests without one (``error`` set)."""
        done: list[Done] = []
        if self._busy:
            now = self._clock()
            first = min(line.deadline for line in self._lines if line.reader is not None)
            wait = max(0.0, first - now)
            timeout = wait if timeout is None else min(timeout, wait)
        events = self._selector.select(timeout)
        self._polled_at = self._clock()
        for key, _ in events:
            self._readable(key.data, done)
        if self._busy:
            now = self._clock()
            for line in self._lines:
                if line.reader is not None and line.deadline <= now:
                    done.append(self._end(line, error="timed out waiting for the reply"))
        return done

    def _readable(self, line: _Line, done: list[Done]) -> None:
        sock = line.sock
        assert sock is not None
        reader = line.reader
        if reader is None:  # idle: the server closed it (or sent what nobody asked for)
            self._close(line)
            return
        try:
            data = sock.recv(_READ)
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(_READ)
            reply = reader.at_close() if not data else reader.feed(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # nothing to read after all (a partial TLS record): the next wait reads it
        except (OSError, ReplyError) as exc:
            reason = str(exc) if isinstance(exc, ReplyError) else f"{type(exc).__name__}: {exc}"
            done.append(self._end(line, error=reason))
            return
        if reply is None:
            line.deadline = self._clock() + self.host.timeout  # each read has the timeout
            return
        done.append(self._end(line, reply=reply))

    def _end(self, line: _Line, reply: Reply | None = None, error: str | None = None) -> Done:
        outcome = Done(line.tag, reply, error)
        line.tag = line.reader = None
        self._busy -= 1
        if reply is None or not reply.keep_alive:
            self._close(line)
        self._free.append(line)
        return outcome

    def _poll_idle(self) -> None:
        """Close idle connections the server has closed since the selector was last read."""
        for key, _ in self._selector.select(0):
            line: _Line = key.data
            if line.reader is None:  # a line with a request is read by the next wait()
                self._close(line)
        self._polled_at = self._clock()

    def _close(self, line: _Line) -> None:
        if line.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(line.sock)
            line.sock.close()
            line.sock = None

    def close(self) -> None:
        for line in self._lines:
            self._close(line)
        self._selector.close()
