"""The SendGrid backend: request bodies built with the official ``sendgrid`` helper
(:mod:`clvflow.delivery.payload`), messages of one layout grouped into shared requests
(:mod:`clvflow.delivery.grouping`), sent over one ``httpx.Client`` (kept-alive connections)
by a small pool of threads, ``concurrency`` requests at a time.

Outcomes per message (a group's reply is every member's):

- 202/200 → ``sent`` (SendGrid's ``X-Message-Id`` kept);
- 429 → wait until ``X-RateLimit-Reset`` (plus jitter) and retry; 5xx, refused connections
  and requests that could not be written whole → retry with exponential backoff and full
  jitter; after the last try → ``failed``;
- 400/413/other 4xx → ``failed`` with SendGrid's message, and the batch goes on; a group's
  request refused so (nothing of it was accepted) is sent again one message a request, so
  the reason lands on the message it belongs to and the others go;
- a timeout or dropped connection after the whole request was written → ``unknown``:
  SendGrid has no idempotency key, so it may have been delivered; it is never retried;
- 401/403 → the whole run stops (:class:`SendAbortedError`): a bad key or an unverified
  sender fails every message the same way. The sender stays refused: every later batch is
  refused at once and sends nothing.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import httpx
import orjson
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from clvflow.delivery.base import Send, SendAbortedError, SendResult
from clvflow.delivery.grouping import (
    MAX_PER_REQUEST,
    PER_REQUEST,
    Group,
    batch_requests,
    new_marker,
)
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import PayloadBuilder
from clvflow.errors import DeliveryError

SEND_PATH = "/v3/mail/send"
SANDBOX_REASON = "sandbox mode: SendGrid validated it and delivered nothing"
# raised before the request was written whole: SendGrid cannot have accepted it
NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.WriteError,
    httpx.WriteTimeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.25
    cap_seconds: float = 20.0
    max_rate_limit_wait: float = 120.0


@dataclass(frozen=True)
class _Request:
    """One request: its messages' places in the batch and its body (or why it has none)."""

    indices: list[int]
    body: bytes | None
    problem: str | None = None


def error_message(reply: httpx.Response) -> str:
    """``"400: The subject is required (subject)"`` from SendGrid's error body."""
    try:
        first = orjson.loads(reply.content)["errors"][0]
        field = f" ({first['field']})" if first.get("field") else ""
        return f"{reply.status_code}: {first.get('message', '')}{field}"
    except (orjson.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError):
        return f"{reply.status_code}: {reply.content[:200].decode('utf-8', 'replace')}"


def _check_setup(api_key: str, api_host: str) -> httpx.URL:
    """The API host as a URL; a bad URL or a key that cannot go in a header is an error
    before anything is claimed."""
    try:
        url = httpx.URL(api_host.rstrip("/"))
    except httpx.InvalidURL:
        url = httpx.URL("invalid:")
    if url.scheme not in ("http", "https") or not url.host:
        raise DeliveryError(
            f"delivery.sendgrid.api_host is '{api_host}'",
            hint="use a URL such as https://api.sendgrid.com (or set SENDGRID_API_HOST)",
        )
    if any(ch in api_key for ch in "\r\n\0") or not api_key.isascii():
        raise DeliveryError(
            "the SendGrid API key holds a line break or a character a header cannot carry",
            hint="check SENDGRID_API_KEY for stray whitespace or newlines",
        )
    return url


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
        per_request: int = PER_REQUEST,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = _check_setup(api_key, api_host)
        self.sandbox = sandbox
        self.concurrency = max(1, concurrency)
        self.per_request = min(max(1, per_request), MAX_PER_REQUEST)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._marker = new_marker()
        self._payloads = PayloadBuilder(sandbox)
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
        )
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sendgrid")
        self._lock = threading.Lock()  # one batch at a time
        self._refused: SendAbortedError | None = None

    def prepare(self, messages: Sequence[OutgoingMessage]) -> Send:
        """Group the batch into requests and build their bodies; the call returned sends
        them (see :meth:`send_batch`)."""
        return partial(self._send, list(messages), list(self._requests(messages)))

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send every message; on 401/403 stop starting requests and raise with what was
        done. A message that never left (the run stopped first) has no result."""
        return self.prepare(messages)()

    def _send(self, messages: list[OutgoingMessage], requests: list[_Request]) -> list[SendResult]:
        with self._lock:
            if self._refused is not None:
                raise SendAbortedError(self._refused.message, [], hint=self._refused.hint)
            slots: list[SendResult | None] = [None] * len(messages)
            ids = [m.message_id for m in messages]
            futures = [self._pool.submit(self._deliver, r, messages, ids, slots) for r in requests]
            for future in futures:
                future.result()
            results = [r for r in slots if r is not None]
            if self._refused is not None:
                raise SendAbortedError(self._refused.message, results, hint=self._refused.hint)
            return results

    def _requests(self, messages: Sequence[OutgoingMessage]) -> Iterator[_Request]:
        """The batch's requests: a group's, or one message's."""
        for found in batch_requests(messages, self.per_request, self._marker):
            if isinstance(found, Group):
                request = self._build(
                    found.indices, partial(self._payloads.shared, messages, found)
                )
                if request.body is None:  # the helper refused one of them: each on its own
                    yield from (self._single(messages, i) for i in found.indices)
                    continue
                yield request
            else:
                yield self._single(messages, found)

    def _single(self, messages: Sequence[OutgoingMessage], index: int) -> _Request:
        return self._build([index], partial(self._payloads.payload, messages[index]))

    @staticmethod
    def _build(indices: list[int], payload: Callable[[], object]) -> _Request:
        try:
            return _Request(indices, orjson.dumps(payload()))
        except (ApiKeyIncludedException, TypeError, ValueError) as exc:
            return _Request(indices, None, problem=f"payload: {exc!r}"[:480])

    def _deliver(
        self,
        request: _Request,
        messages: Sequence[OutgoingMessage],
        ids: list[int],
        slots: list[SendResult | None],
    ) -> None:
        """One request until it has an outcome: sent, failed, unknown, or the refusal."""

        def settle(status: str, reason: str | None = None, provider: str | None = None) -> None:
            for index in request.indices:
                slots[index] = SendResult(ids[index], status, provider_id=provider, reason=reason)

        if request.body is None:
            settle("failed", request.problem)
            return
        tries = 0
        while self._refused is None:
            try:
                reply = self._client.post(SEND_PATH, content=request.body)
            except NOT_SENT as exc:
                why, wait = f"{type(exc).__name__}: {exc}", self._backoff(tries)
            except httpx.LocalProtocolError as exc:
                settle("failed", f"the request could not be made: {exc}"[:480])
                return
            except httpx.TransportError as exc:
                settle(
                    "unknown",
                    f"{type(exc).__name__}: {exc} after the request was sent: it may have been "
                    "delivered, so it is not retried",
                )
                return
            else:
                status = reply.status_code
                if status in (200, 202):
                    reason = SANDBOX_REASON if self.sandbox else None
                    settle("sent", reason, reply.headers.get("x-message-id"))
                    return
                if status in (401, 403):
                    self._refuse(reply)
                    return
                if status == 429:
                    why, wait = error_message(reply), self._rate_limit_wait(reply, tries)
                elif status >= 500:
                    why, wait = error_message(reply), self._backoff(tries)
                elif len(request.indices) > 1:  # refused whole: each message on its own
                    for index in request.indices:
                        self._deliver(self._single(messages, index), messages, ids, slots)
                    return
                else:
                    settle("failed", error_message(reply))
                    return
            tries += 1
            if tries >= self.retry.attempts:
                settle("failed", f"gave up after {self.retry.attempts} attempts, last: {why}")
                return
            self._sleep(wait)

    def _refuse(self, reply: httpx.Response) -> None:
        self._refused = SendAbortedError(
            f"SendGrid refused the request: {error_message(reply)}",
            [],
            hint="check SENDGRID_API_KEY (or the Prefect Secret block) and that the "
            "sender address is verified in SendGrid",
        )

    def _backoff(self, tries: int) -> float:
        ceiling = min(self.retry.cap_seconds, self.retry.base_seconds * 2**tries)
        return self._random.uniform(0, ceiling)  # full jitter

    def _rate_limit_wait(self, reply: httpx.Response, tries: int) -> float:
        try:
            wait = float(reply.headers["x-ratelimit-reset"]) - self._clock()
        except (KeyError, ValueError):
            wait = self._backoff(tries)
        jitter = self._random.uniform(0, self.retry.base_seconds)
        return min(max(wait, 0.0) + jitter, self.retry.max_rate_limit_wait)

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True)
            self._client.close()
