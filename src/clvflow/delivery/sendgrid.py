"""The SendGrid backend: payloads built with the official ``sendgrid`` package, sent over
kept-alive HTTP connections (the official client opens a new connection per call), several
requests at a time.

Messages of a batch that share their envelope and most of their content go as one request
of up to ``per_request`` personalizations (:mod:`clvflow.delivery.grouping`); the rest one
request each. Outcomes per message (a group's reply is every member's):

- 202/200 → ``sent`` (SendGrid's ``X-Message-Id`` kept);
- 429 → wait until ``X-RateLimit-Reset`` (plus jitter) and retry; 5xx, refused connections
  and requests that could not be written completely → retry with exponential backoff and
  jitter; after the last try → ``failed``;
- 400/413/other 4xx → ``failed`` with SendGrid's message, and the batch goes on; a group's
  request refused so (nothing of it was accepted) is sent again one message a request, so
  the reason lands on the message it belongs to and the others go;
- a timeout or dropped connection after the whole request was written → ``unknown``:
  SendGrid has no idempotency key, so it may have been delivered; it is never retried blindly;
- 401/403 → the whole run stops (:class:`SendAbortedError`): a bad key or an unverified
  sender fails every message the same way.

Why ``http.client`` and not ``httpx``: measured against the stand-in on this 2-core machine
(bench/README.md, "send"), a kept-alive ``httpx.Client`` costs 700-950 µs of CPU per request
in the sending process, the standard library's ``http.client`` on the same kept-alive
connections 210-270 µs; that CPU is the ceiling of a campaign's rate. ``http.client``
opens the connections (and TLS); replies are parsed by ``httptools``
(:mod:`clvflow.delivery.reply`). One thread drives every connection with a selector
(:mod:`clvflow.delivery.connections`): a retry waits on a timer, not in a sleeping thread,
and hundreds of connections (what a real round trip needs) cost no more than a few.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import orjson
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.connections import Connections, Done, Host, NotSentError
from clvflow.delivery.grouping import (
    MAX_PER_REQUEST,
    PER_REQUEST,
    Group,
    batch_requests,
    new_marker,
)
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import PayloadBuilder
from clvflow.delivery.reply import Reply

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
        self.api_host = api_host
        self.timeout = timeout
        self.sandbox = sandbox
        self.concurrency = max(1, concurrency)
        self.per_request = min(max(1, per_request), MAX_PER_REQUEST)
        self._marker = new_marker()
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._random = random.Random()
        self._order = itertools.count()  # ties between timers: first scheduled, first due
        self._refused: SendAbortedError | None = None
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "clvflow",
        }
        self._payloads = PayloadBuilder(sandbox)
        # a bad URL or a key with a line break fails here, before anything is claimed
        host = Host(api_host, timeout)
        host.head(SEND_PATH, self._headers)
        self._time = _WaitClock(sleep)
        self._connections = Connections(host, self.concurrency, self._time.now)
        self._lock = threading.Lock()  # one batch at a time on the connections

    def prepare(self, messages: Sequence[OutgoingMessage]) -> list[_Attempt]:
        """The batch's requests, grouped and with their bodies built, for
        ``send_batch(messages, prepared)``; nothing is sent. (Safe beside a batch being
        sent: the sending process prepares batch k + 1 while batch k is on the wire.)"""
        attempts = list(self._attempts(messages))
        for attempt in attempts:
            with contextlib.suppress(_PayloadError):  # raised again as it starts: handled there
                self._body(attempt, messages)
        return attempts

    def send_batch(
        self, messages: Sequence[OutgoingMessage], prepared: list[_Attempt] | None = None
    ) -> list[SendResult]:
        """Send all (``prepared``: their requests from :meth:`prepare`); on 401/403 stop
        starting requests and raise with what was done.

        Once refused, the sender stays refused: every later batch (a retry, the next batch)
        raises the same error at once and sends nothing, so no message is ever left without
        a result. A message that never left (the run stopped first) has no result."""
        with self._lock:
            if self._refused is not None:
                raise SendAbortedError(self._refused.message, [], hint=self._refused.hint)
            slots: list[SendResult | None] = [None] * len(messages)
            abort = self._send_all(messages, slots, prepared)
            results = [r for r in slots if r is not None]
            if abort is not None:
                self._refused = abort
                raise SendAbortedError(abort.message, results, hint=abort.hint)
            return results

    def _attempts(self, messages: Sequence[OutgoingMessage]) -> Iterator[_Attempt]:
        """The batch's requests, lazily: a group's, or one message's."""
        for r in batch_requests(messages, self.per_request, self._marker):
            yield _Attempt(r.indices, r) if isinstance(r, Group) else _Attempt([r])

    def _send_all(
        self,
        messages: Sequence[OutgoingMessage],
        slots: list[SendResult | None],
        prepared: list[_Attempt] | None,
    ) -> SendAbortedError | None:
        """The batch's event loop: start requests on free connections, read the replies,
        retry after a wait (timers in ``waiting``); returns the refusal that stopped it."""
        connections = self._connections
        # unprepared, found as they are needed: the first is on the wire while the next forms
        fresh = iter(prepared) if prepared is not None else self._attempts(messages)
        ready: deque[_Attempt] = deque()
        waiting: list[tuple[float, int, _Attempt]] = []  # (due, order, attempt): a heap
        abort: SendAbortedError | None = None
        while True:
            now = self._time.now()
            while waiting and waiting[0][0] <= now:
                ready.append(heapq.heappop(waiting)[2])
            while connections.free and abort is None:
                if not ready:
                    following = next(fresh, None)
                    if following is None:
                        break
                    ready.append(following)
                attempt = ready.popleft()
                try:
                    body = self._body(attempt, messages)
                    connections.start(attempt, SEND_PATH, body, self._headers)
                except NotSentError as exc:
                    self._again(attempt, str(exc), self._backoff(attempt.tries), waiting, slots)
                except _PayloadError as exc:
                    if attempt.group is not None:
                        ready.extendleft(attempt.alone())
                    else:
                        self._settled(attempt, slots, "failed", reason=f"payload: {exc.args[0]}")
            if abort is not None:  # refused: what has not left stays without a result
                ready.clear()
                waiting.clear()
                fresh = iter(())  # nothing more starts
            if connections.busy:  # every free connection took a request: wait for replies
                timeout = max(0.0, waiting[0][0] - self._time.now()) if waiting else None
                for done in connections.wait(timeout):
                    abort = self._settle(done, waiting, slots, ready) or abort
            elif waiting and not ready:
                self._time.sleep(waiting[0][0] - self._time.now())
            elif not ready:  # nothing out, waiting or ready: every request has started
                return abort

    def _body(self, attempt: _Attempt, messages: Sequence[OutgoingMessage]) -> bytes:
        if attempt.body is None:
            attempt.message_ids = [messages[i].message_id for i in attempt.indices]
            try:
                if attempt.group is None:
                    payload = self._payloads.payload(messages[attempt.indices[0]])
                else:
                    payload = self._payloads.shared(messages, attempt.group)
                attempt.body = orjson.dumps(payload)
            except (ApiKeyIncludedException, TypeError, ValueError) as exc:
                raise _PayloadError(repr(exc)[:480]) from None
        return attempt.body

    def _settle(
        self,
        done: Done,
        waiting: list[tuple[float, int, _Attempt]],
        slots: list[SendResult | None],
        ready: deque[_Attempt],
    ) -> SendAbortedError | None:
        """One request's end: results, a retry, or the refusal that stops the run."""
        attempt: _Attempt = done.tag
        reply = done.reply
        if reply is None:
            reason = (
                f"{done.error} after the request was sent: it may have been delivered, "
                "so it is not retried"
            )
            self._settled(attempt, slots, "unknown", reason=reason)
            return None
        status = reply.status
        if status in (200, 202):
            self._settled(
                attempt,
                slots,
                "sent",
                provider_id=reply.headers.get("x-message-id"),
                reason=SANDBOX_REASON if self.sandbox else None,
            )
        elif status in (401, 403):
            return SendAbortedError(
                f"SendGrid refused the request: {error_message(reply)}",
                [],
                hint="check SENDGRID_API_KEY (or the Prefect Secret block) and that the "
                "sender address is verified in SendGrid",
            )
        elif status == 429:
            wait = self._rate_limit_wait(reply, attempt.tries)
            self._again(attempt, error_message(reply), wait, waiting, slots)
        elif status >= 500:
            self._again(attempt, error_message(reply), self._backoff(attempt.tries), waiting, slots)
        elif attempt.group is not None:  # refused whole: each message on its own
            ready.extendleft(attempt.alone())
        else:
            self._settled(attempt, slots, "failed", reason=error_message(reply))
        return None

    @staticmethod
    def _settled(
        attempt: _Attempt,
        slots: list[SendResult | None],
        status: str,
        *,
        reason: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        for index, message_id in zip(attempt.indices, attempt.message_ids, strict=True):
            slots[index] = SendResult(message_id, status, provider_id=provider_id, reason=reason)

    def _again(
        self,
        attempt: _Attempt,
        why: str,
        wait: float,
        waiting: list[tuple[float, int, _Attempt]],
        slots: list[SendResult | None],
    ) -> None:
        """Retry after ``wait`` seconds, or record the failure once the tries are used up."""
        attempt.tries += 1
        if attempt.tries >= self.retry.attempts:
            reason = f"gave up after {self.retry.attempts} attempts, last: {why}"
            self._settled(attempt, slots, "failed", reason=reason)
            return
        heapq.heappush(waiting, (self._time.now() + wait, next(self._order), attempt))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.cap_seconds, self.retry.base_seconds * 2**attempt)
        return self._random.uniform(0, ceiling)  # full jitter

    def _rate_limit_wait(self, reply: Reply, attempt: int) -> float:
        try:
            reset = float(reply.headers["x-ratelimit-reset"])
            wait = reset - self._clock()
        except (KeyError, ValueError):
            wait = self._backoff(attempt)
        jitter = self._random.uniform(0, self.retry.base_seconds)
        return min(max(wait, 0.0) + jitter, self.retry.max_rate_limit_wait)

    def close(self) -> None:
        with self._lock:
            self._connections.close()


@dataclass(slots=True)
class _Attempt:
    """A request on its way: its messages' places in the batch (one, or a group's), their
    ledger ids and the body once built, tries so far."""

    indices: list[int]
    group: Group | None = None
    body: bytes | None = None
    tries: int = 0
    message_ids: list[int] = field(default_factory=list)

    def alone(self) -> list[_Attempt]:
        """The group's messages as requests of their own, in batch order (for extendleft)."""
        return [_Attempt([index]) for index in reversed(self.indices)]


class _PayloadError(Exception):
    """The message cannot become a request body (the helper refused it)."""


class _WaitClock:
    """Monotonic time for the batch's timers, and the wait for the next one.

    ``sleep`` is what waits (``time.sleep``; tests pass a function that only records the
    wait): whatever it did not really wait is added to this clock, so a retry that waited
    is due when ``sleep`` returns either way."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep
        self._skew = 0.0

    def now(self) -> float:
        return time.monotonic() + self._skew

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        started = time.monotonic()
        self._sleep(seconds)
        self._skew += max(0.0, seconds - (time.monotonic() - started))
