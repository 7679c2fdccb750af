"""The SendGrid backend: payloads built with the official ``sendgrid`` package, sent over a
pool of kept-alive HTTP connections (the official client opens a new connection per call),
several requests at a time.

Outcomes per message:

- 202/200 → ``sent`` (SendGrid's ``X-Message-Id`` kept);
- 429 → wait until ``X-RateLimit-Reset`` (plus jitter) and retry; 5xx and refused
  connections → retry with exponential backoff and jitter; after the last try → ``failed``;
- 400/413/other 4xx → ``failed`` with SendGrid's message, and the batch goes on;
- a timeout or dropped connection after the request was written → ``unknown``: SendGrid has
  no idempotency key, so it may have been delivered; it is never retried blindly;
- 401/403 → the whole run stops (:class:`SendAbortedError`): a bad key or an unverified
  sender fails every message the same way.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    To,
)

from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.message import OutgoingMessage

SEND_PATH = "/v3/mail/send"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.25
    cap_seconds: float = 20.0
    max_rate_limit_wait: float = 120.0


def build_payload(message: OutgoingMessage, sandbox: bool) -> dict[str, Any]:
    """The v3 Mail Send body for one message, via the official helper classes."""
    mail = Mail(
        from_email=From(message.from_email, message.from_name or None),
        to_emails=To(message.to_email, message.to_name or None),
        subject=message.subject,
        plain_text_content=message.text,
        html_content=message.html,
    )
    if message.reply_to:
        mail.reply_to = ReplyTo(message.reply_to)
    for name, value in message.headers.items():
        mail.header = Header(name, value)
    for key, value in (
        ("clvflow_campaign", message.campaign),
        ("clvflow_occurrence", message.occurrence),
        ("clvflow_customer", message.customer_id),
        ("clvflow_message", str(message.message_id)),
    ):
        mail.custom_arg = CustomArg(key, value)
    for category in message.categories[:10]:
        mail.category = Category(category)
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    payload: dict[str, Any] = mail.get()
    return payload


def _error_message(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        field = f" ({first['field']})" if first.get("field") else ""
        return f"{response.status_code}: {first.get('message', '')}{field}"
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


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
        self.sandbox = sandbox
        self.concurrency = max(1, concurrency)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._stop = threading.Event()
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": "clvflow",
        }
        self._client = httpx.Client(
            base_url=api_host.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
            trust_env=False,  # never route mail through an ambient proxy
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sendgrid")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send all; on 401/403 stop submitting and raise with what was done."""
        futures = [self._pool.submit(self._send_one, m) for m in messages]
        results: list[SendResult] = []
        abort: SendAbortedError | None = None
        for future in futures:
            try:
                result = future.result()
            except SendAbortedError as exc:
                abort = abort or exc
                continue
            if result is not None:
                results.append(result)
        if abort is not None:
            raise SendAbortedError(abort.message, results, hint=abort.hint)
        return results

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.cap_seconds, self.retry.base_seconds * 2**attempt)
        return self._random.uniform(0, ceiling)  # full jitter

    def _send_one(self, message: OutgoingMessage) -> SendResult | None:
        if self._stop.is_set():
            return None  # the run is stopping: never handed over
        body = json.dumps(build_payload(message, self.sandbox)).encode()
        last = "no attempt"
        for attempt in range(self.retry.attempts):
            try:
                response = self._client.post(SEND_PATH, content=body, headers=self._headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = f"cannot connect: {type(exc).__name__}"  # nothing was sent: retry
                self._sleep(self._backoff(attempt))
                continue
            except httpx.TransportError as exc:
                return SendResult(
                    message.message_id,
                    "unknown",
                    reason=f"{type(exc).__name__} after the request was sent: it may have "
                    "been delivered, so it is not retried",
                )
            status = response.status_code
            if status in (200, 202):
                return SendResult(
                    message.message_id, "sent", provider_id=response.headers.get("X-Message-Id")
                )
            if status in (401, 403):
                self._stop.set()
                raise SendAbortedError(
                    f"SendGrid refused the request: {_error_message(response)}",
                    [],
                    hint="check SENDGRID_API_KEY (or the Prefect Secret block) and that the "
                    "sender address is verified in SendGrid",
                )
            if status == 429:
                last = _error_message(response)
                self._sleep(self._rate_limit_wait(response, attempt))
                continue
            if status >= 500:
                last = _error_message(response)
                self._sleep(self._backoff(attempt))
                continue
            return SendResult(message.message_id, "failed", reason=_error_message(response))
        return SendResult(
            message.message_id,
            "failed",
            reason=f"gave up after {self.retry.attempts} attempts, last: {last}",
        )

    def _rate_limit_wait(self, response: httpx.Response, attempt: int) -> float:
        try:
            reset = float(response.headers["X-RateLimit-Reset"])
            wait = reset - self._clock()
        except (KeyError, ValueError):
            wait = self._backoff(attempt)
        jitter = self._random.uniform(0, self.retry.base_seconds)
        return min(max(wait, 0.0) + jitter, self.retry.max_rate_limit_wait)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
