"""The SendGrid backend: payloads built with the official ``sendgrid`` package, sent over
kept-alive HTTP connections (the official client opens a new connection per call), several
requests at a time.

Outcomes per message:

- 202/200 → ``sent`` (SendGrid's ``X-Message-Id`` kept);
- 429 → wait until ``X-RateLimit-Reset`` (plus jitter) and retry; 5xx, refused connections
  and requests that could not be written completely → retry with exponential backoff and
  jitter; after the last try → ``failed``;
- 400/413/other 4xx → ``failed`` with SendGrid's message, and the batch goes on;
- a timeout or dropped connection after the whole request was written → ``unknown``:
  SendGrid has no idempotency key, so it may have been delivered; it is never retried blindly;
- 401/403 → the whole run stops (:class:`SendAbortedError`): a bad key or an unverified
  sender fails every message the same way.

Why ``http.client`` and not ``httpx``: measured against the stand-in on this 2-core machine
(bench/README.md, "send"), a kept-alive ``httpx.Client`` costs 700-950 µs of CPU per request
in the sending process, the standard library's ``http.client`` on the same kept-alive
connections 210-270 µs; the sending process holds the GIL for rendering too, so that CPU is
the ceiling of a campaign's rate. ``http.client`` opens the connections (and TLS); replies
are parsed by ``httptools`` (:mod:`clvflow.delivery.reply`), which takes a request
from 108 to 70 µs.
"""

from __future__ import annotations

import http.client
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import PayloadBuilder
from clvflow.delivery.reply import Reply, ReplyError, read_reply
from clvflow.errors import DeliveryError

SEND_PATH = "/v3/mail/send"
SANDBOX_REASON = "sandbox mode: SendGrid validated it and delivered nothing"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.25
    cap_seconds: float = 20.0
    max_rate_limit_wait: float = 120.0


def error_message(reply: Reply) -> str:
    """``"400: The subject is required (subject)"`` from SendGrid's error body."""
    try:
        first = orjson.loads(reply.body)["errors"][0]
        field = f" ({first['field']})" if first.get("field") else ""
        return f"{reply.status}: {first.get('message', '')}{field}"
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
        return f"{reply.status}: {reply.body[:200].decode('utf-8', 'replace')}"


class NotSentError(Exception):
    """The request never left completely (refused, or the write failed): safe to retry."""


class MaybeSentError(Exception):
    """The whole request was written, but no reply came: it may have been delivered."""


class Endpoint:
    """One kept-alive connection to the API host; a worker thread owns one.

    ``http.client`` opens the connection (and TLS), ``httptools`` parses each reply; the
    request goes out as one write of a header block built once plus the body (``http.client`` writes
    the two separately, and each loopback write costs about 70 µs).
    """

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
        self._conn: http.client.HTTPConnection | None = None
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def _socket(self) -> socket.socket:
        conn = self._conn
        if conn is not None and (conn.sock is None or _readable(conn.sock)):
            # closed by the server since the last reply (idle timeout, Connection: close):
            # reusing it could lose a request in flight, so start afresh
            conn.close()
            conn = None
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self.host, self.port, timeout=self.timeout)  # sets TCP_NODELAY
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise NotSentError(f"cannot connect: {type(exc).__name__}: {exc}") from None
            self._conn = conn
        assert conn.sock is not None
        return conn.sock

    def _head(self, path: str, headers: dict[str, str]) -> bytes:
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

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        request = b"".join((self._head(path, headers), b"%d\r\n\r\n" % len(body), body))
        sock = self._socket()
        try:
            sock.sendall(request)
        except OSError as exc:  # the request did not get out whole: nothing was accepted
            self.close()
            raise NotSentError(f"cannot write the request: {type(exc).__name__}") from None
        try:
            reply = read_reply(sock)
        except ReplyError as exc:
            self.close()
            raise MaybeSentError(str(exc)) from None
        if not reply.keep_alive:
            self.close()
        return reply

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _readable(sock: socket.socket) -> bool:
    """A kept-alive socket with something to read (EOF, a reset) before we asked."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class SendGridSender:
    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        api_host: str,
        *,
        timeout: float = 10.0,
        sandbox: bool = False,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_host = api_host
        self.timeout = timeout
        self.sandbox = sandbox
        self.concurrency = max(1, concurrency)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._stop = threading.Event()
        self._refused: SendAbortedError | None = None
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "clvflow",
        }
        self._payloads = PayloadBuilder(sandbox)
        # a bad URL or a key with a line break fails here, before anything is claimed
        Endpoint(api_host, timeout)._head(SEND_PATH, self._headers)
        self._local = threading.local()
        self._endpoints: list[Endpoint] = []
        self._endpoints_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sendgrid")

    def _endpoint(self) -> Endpoint:
        endpoint: Endpoint | None = getattr(self._local, "endpoint", None)
        if endpoint is None:
            endpoint = Endpoint(self.api_host, self.timeout)
            self._local.endpoint = endpoint
            with self._endpoints_lock:
                self._endpoints.append(endpoint)
        return endpoint

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send all; on 401/403 stop submitting and raise with what was done.

        Once refused, the sender stays refused: every later batch (a retry, the next batch)
        raises the same error at once and sends nothing, so no message is ever left without
        a result."""
        if self._refused is not None:
            raise SendAbortedError(self._refused.message, [], hint=self._refused.hint)
        # each worker thread takes the next message until none is left: no future and no
        # condition variable per message (a tenth of the sending process's time)
        waiting = deque(enumerate(messages))
        slots: list[SendResult | None] = [None] * len(messages)
        aborts: list[SendAbortedError] = []

        def drain() -> None:
            while True:
                try:
                    index, message = waiting.popleft()
                except IndexError:
                    return
                try:
                    slots[index] = self._send_one(message)
                except SendAbortedError as exc:
                    aborts.append(exc)  # the others stop too (``_stop``): nothing more leaves

        workers = [self._pool.submit(drain) for _ in range(min(self.concurrency, len(messages)))]
        for worker in workers:
            worker.result()
        results = [r for r in slots if r is not None]
        if aborts:
            abort = self._refused = aborts[0]
            raise SendAbortedError(abort.message, results, hint=abort.hint)
        return results

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.cap_seconds, self.retry.base_seconds * 2**attempt)
        return self._random.uniform(0, ceiling)  # full jitter

    def _send_one(self, message: OutgoingMessage) -> SendResult | None:
        if self._stop.is_set():
            return None  # the run is stopping: never handed over
        try:
            body = orjson.dumps(self._payloads.payload(message))
        except (ApiKeyIncludedException, TypeError, ValueError) as exc:
            return SendResult(message.message_id, "failed", reason=f"payload: {exc!r}"[:500])
        endpoint = self._endpoint()
        last = "no attempt"
        for attempt in range(self.retry.attempts):
            if self._stop.is_set():
                return None  # stopped between attempts: this one never got through
            try:
                reply = endpoint.post(SEND_PATH, body, self._headers)
            except NotSentError as exc:
                last = str(exc)
                self._sleep(self._backoff(attempt))
                continue
            except MaybeSentError as exc:
                return SendResult(
                    message.message_id,
                    "unknown",
                    reason=f"{exc} after the request was sent: it may have been delivered, "
                    "so it is not retried",
                )
            status = reply.status
            if status in (200, 202):
                return SendResult(
                    message.message_id,
                    "sent",
                    provider_id=reply.headers.get("x-message-id"),
                    reason=SANDBOX_REASON if self.sandbox else None,
                )
            if status in (401, 403):
                self._stop.set()
                raise SendAbortedError(
                    f"SendGrid refused the request: {error_message(reply)}",
                    [],
                    hint="check SENDGRID_API_KEY (or the Prefect Secret block) and that the "
                    "sender address is verified in SendGrid",
                )
            if status == 429:
                last = error_message(reply)
                self._sleep(self._rate_limit_wait(reply, attempt))
                continue
            if status >= 500:
                last = error_message(reply)
                self._sleep(self._backoff(attempt))
                continue
            return SendResult(message.message_id, "failed", reason=error_message(reply))
        return SendResult(
            message.message_id,
            "failed",
            reason=f"gave up after {self.retry.attempts} attempts, last: {last}",
        )

    def _rate_limit_wait(self, reply: Reply, attempt: int) -> float:
        try:
            reset = float(reply.headers["x-ratelimit-reset"])
            wait = reset - self._clock()
        except (KeyError, ValueError):
            wait = self._backoff(attempt)
        jitter = self._random.uniform(0, self.retry.base_seconds)
        return min(max(wait, 0.0) + jitter, self.retry.max_rate_limit_wait)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._endpoints_lock:
            for endpoint in self._endpoints:
                endpoint.close()
            self._endpoints.clear()
