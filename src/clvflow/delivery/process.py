"""A sender in its own process, so sending and rendering run on different cores.

The campaign's process renders (pure Python: it holds the GIL); the SendGrid sender needs
the GIL too, for every request. In one process they take turns, and a thread that renders
the next batch while the last one is sent slows both (bench/README.md,
"send"). :class:`SenderProcess` moves the sender into a child process that gets a whole
batch over a pipe and answers with one result per message, so the campaign's process only
waits on the pipe (without the GIL) while the batch is on the wire.

Messages cross the pipe as tuples of their fields, results as tuples too: a dataclass
pickles through ``copyreg`` (a Python call per object), a tuple of strings in C, about a
fifth of the time for a batch of 1,000 emails.

The child stops on its own as soon as its parent is gone (a crash, SIGKILL): a batch whose
replies nobody can record is not sent on. Messages already handed over stay ``sending`` in
the ledger and become ``unknown`` at the next run, as with an in-process sender.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.errors import DeliveryError
from clvflow.heap import start_bulk_work

if TYPE_CHECKING:
    from clvflow.delivery.sendgrid import SendGridSender

_PARENT_CHECK_SECONDS = 0.05
_MESSAGE_FIELDS = attrgetter(*(f.name for f in fields(OutgoingMessage)))
_RESULT_FIELDS = attrgetter(*(f.name for f in fields(SendResult)))


def _results(rows: list[tuple[Any, ...]]) -> list[SendResult]:
    return [SendResult(*row) for row in rows]


@dataclass(frozen=True)
class SendGridSettings:
    """What the child needs to open a :class:`~clvflow.delivery.sendgrid.SendGridSender`
    (the key travels over the pipe, never through the environment or a command line)."""

    api_key: str = field(repr=False)  # never in a log line or a traceback
    api_host: str
    timeout: float
    sandbox: bool
    concurrency: int
    per_request: int = 500  # grouping.PER_REQUEST (not imported here: it loads the helper)

    def open(self) -> SendGridSender:
        from clvflow.delivery.sendgrid import SendGridSender

        return SendGridSender(
            self.api_key,
            self.api_host,
            timeout=self.timeout,
            sandbox=self.sandbox,
            concurrency=self.concurrency,
            per_request=self.per_request,
        )


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)  # orphaned: stop sending at once, nothing can record the outcomes


def _child(conn: Connection, settings: SendGridSettings, parent: int) -> None:
    start_bulk_work()  # a process of its own, for the whole run (clvflow.heap)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        sender = settings.open()
    except DeliveryError as exc:
        conn.send(("error", exc.message, exc.hint))
        return
    conn.send(("ready",))
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request[0] == "close":
                return
            messages = [OutgoingMessage(*fields) for fields in request[1]]
            try:
                conn.send(("ok", list(map(_RESULT_FIELDS, sender.send_batch(messages)))))
            except SendAbortedError as stop:
                results = list(map(_RESULT_FIELDS, stop.results))
                conn.send(("aborted", stop.message, stop.hint, results))
    finally:
        sender.close()


class SenderProcess:
    """A :class:`~clvflow.delivery.base.Sender` whose batches are sent by a child process."""

    name = "sendgrid"
    waits_off_the_gil = True  # send_batch blocks on a pipe: another thread may render

    def __init__(self, settings: SendGridSettings, *, wait: bool = True) -> None:
        """Start the child; with ``wait`` (else at :meth:`wait_ready` or the first batch)
        wait until it has opened its sender, raising what stopped it."""
        context = multiprocessing.get_context("spawn")  # nothing inherited but the pipe
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child,
            args=(child_end, settings, os.getpid()),
            name="clvflow-sender",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()
        self._ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the child has opened its sender (its start, about 0.4 s, overlaps
        whatever the caller did since); raise what stopped it, e.g. a malformed host."""
        with self._lock:
            if self._ready:
                return
            reply = self._receive()
            if reply[0] == "error":
                self._process.join(5)
                raise DeliveryError(reply[1], hint=reply[2])
            self._ready = True

    def _receive(self) -> tuple[Any, ...]:
        try:
            reply: tuple[Any, ...] = self._conn.recv()
        except (EOFError, OSError):
            raise DeliveryError(
                f"the sending process stopped (exit code {self._process.exitcode})",
                hint="its messages stay 'sending' and are reported unknown at the next run",
            ) from None
        return reply

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.wait_ready()
        with self._lock:  # one batch at a time on the pipe
            self._conn.send(("batch", list(map(_MESSAGE_FIELDS, messages))))
            reply = self._receive()
        if reply[0] == "aborted":
            raise SendAbortedError(reply[1], _results(reply[3]), hint=reply[2])
        return _results(reply[1])

    def close(self) -> None:
        if self._process.is_alive():
            try:
                with self._lock:
                    self._conn.send(("close",))
            except OSError:
                pass
            self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
