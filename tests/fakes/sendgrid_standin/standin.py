"""The stand-in itself: SendGrid's state (keys, faults, accepted messages, suppressions)
and a uvicorn server for :class:`~.app.StandInApp` in a daemon thread."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import uvicorn

from .app import LIST_KINDS, MAX_BODY_BYTES, StandInApp
from .faults import FaultConfig, Outcome
from .rules import mail_send_validator

__all__ = ["AcceptedMessage", "SendGridStandIn", "SuppressionKind", "personal_bodies"]

SuppressionKind = Literal["unsubscribes", "bounces", "spam_reports", "asm_group"]

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
# what uvicorn logs when an application leaves a reply unfinished, as a drop fault does
_UNFINISHED_REPLY: Final = "ASGI callable returned without completing response."


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


_PERSONAL_OVER_MESSAGE: Final = frozenset({"subject", "headers", "custom_args", "substitutions"})


def _substituted(value: str, substitutions: Mapping[str, str]) -> str:
    for tag, text in substitutions.items():
        value = value.replace(tag, text)
    return value


class _HideDeliberateDrops(logging.Filter):
    """Drops uvicorn's error line for an unfinished reply when it comes from one serving
    thread: there, an unfinished reply is a drop fault, not a fault of the application."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self.thread.ident and record.msg == _UNFINISHED_REPLY)


@dataclass(slots=True)
class _Serving:
    """A running server: uvicorn, its thread and its bound address."""

    server: uvicorn.Server
    thread: threading.Thread
    log_filter: _HideDeliberateDrops
    host: str
    port: int


class SendGridStandIn:
    """A SendGrid v3 stand-in on a loopback port, served by uvicorn in a daemon thread.

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
        idle_timeout_s: a kept-alive connection idle this long between requests is closed.
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
        self._lifecycle = threading.Lock()  # one start or stop at a time
        self._serving: _Serving | None = None
        mail_send_validator()  # build the validator now, not on the first request

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Bind, serve in a daemon thread and wait until it accepts connections; returns
        ``self``. Raises :class:`RuntimeError` if it is running already or does not start
        within ``timeout`` seconds, :class:`OSError` if the address cannot be bound."""
        with self._lifecycle:
            if self._serving is not None:
                raise RuntimeError("the stand-in is already running")
            sock = socket.create_server(self._bind, backlog=2048)
            try:
                self._serving = self._serve(sock, timeout)
            except BaseException:
                sock.close()
                raise
        return self

    def _serve(self, sock: socket.socket, timeout: float) -> _Serving:
        host, port = sock.getsockname()[:2]
        config = uvicorn.Config(
            StandInApp(self),
            http="httptools",  # passes the informational head of a drop fault on as it is
            ws="none",
            lifespan="off",
            loop="asyncio",
            log_config=None,  # leave the process's logging as it is
            access_log=False,
            # uvicorn hands this to loop.call_later, which takes any number of seconds
            timeout_keep_alive=self.idle_timeout_s,  # type: ignore[arg-type]
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},  # uvicorn closes it when it stops
            name=f"sendgrid-standin:{port}",
            daemon=True,
        )
        log_filter = _HideDeliberateDrops(thread)
        logging.getLogger("uvicorn.error").addFilter(log_filter)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout)
                logging.getLogger("uvicorn.error").removeFilter(log_filter)
                raise RuntimeError(f"the stand-in did not start on {host}:{port}")
            thread.join(0.01)  # wait a little, or until the thread ends
        return _Serving(server, thread, log_filter, str(host), int(port))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop serving: close idle connections and the listening socket, let replies in
        progress finish (up to ``timeout`` seconds), then end the thread (idempotent)."""
        with self._lifecycle:
            serving, self._serving = self._serving, None
            if serving is None:
                return
            serving.server.should_exit = True
            serving.thread.join(timeout)
            if serving.thread.is_alive():
                serving.server.force_exit = True
                serving.thread.join(timeout)
            logging.getLogger("uvicorn.error").removeFilter(serving.log_filter)

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
        return self._serving is not None

    @property
    def host(self) -> str:
        """The bound address."""
        return self._require_serving().host

    @property
    def port(self) -> int:
        """The bound port (the free port picked when ``port=0``)."""
        return self._require_serving().port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (pass it as ``host=`` to the client)."""
        serving = self._require_serving()
        return f"http://{serving.host}:{serving.port}"

    def _require_serving(self) -> _Serving:
        serving = self._serving
        if serving is None:
            raise RuntimeError("the stand-in is not running; use start() or a with block")
        return serving

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

    def _draw_fault(self) -> tuple[FaultConfig, Outcome, float]:
        """The faults in force, the outcome drawn and the delay drawn (two draws)."""
        with self._lock:
            faults = self._faults
            u, v = self._rng.random(), self._rng.random()
        return faults, faults.outcome(u), faults.slow_delay_s if v < faults.rate_slow else 0.0

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
        """Record an accepted body; returns its new message id."""
        if not self.keep_content:  # keep who and why, not the (large) parts
            body = {k: v for k, v in body.items() if k != "content"}
            body["personalizations"] = [
                {k: v for k, v in pers.items() if k != "substitutions"}
                for pers in body["personalizations"]
            ]
        received_at = self.clock()
        with self._lock:
            message_id = f"{self._id_prefix}.{next(self._ids):x}"
            record = AcceptedMessage(
                message_id, body, headers, key, received_at, sandbox, connection_dropped=dropped
            )
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
            bucket.pop(email.lower(), None)  # a new entry goes last
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
