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

A batch can be *staged* (:meth:`SenderProcess.stage`): shipped ahead, so the child groups
it into requests and builds their bodies while the batch before it is on the wire. Nothing
of a staged batch leaves before :meth:`SenderProcess.send_batch` names it, so the caller
still marks a batch ``sending`` just before it goes, and a staged batch that never goes is
only ever ``claimed``. In the child one thread reads the pipe, one prepares staged batches,
one sends, in order.

The child stops on its own as soon as its parent is gone (a crash, SIGKILL): a batch whose
replies nobody can record is not sent on. Messages already handed over stay ``sending`` in
the ledger and become ``unknown`` at the next run, as with an in-process sender.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import queue
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


def _messages(rows: list[tuple[Any, ...]]) -> list[OutgoingMessage]:
    return [OutgoingMessage(*fields) for fields in rows]


def _child(conn: Connection, settings: SendGridSettings, parent: int) -> None:
    """Read the pipe: ``stage`` (token, messages) prepares a batch beside the sending,
    ``send`` (token) sends a staged one, ``batch`` (messages) one as it comes, ``drop``
    (token) forgets a staged one, ``close`` ends after what was asked is done."""
    start_bulk_work()  # a process of its own, for the whole run (clvflow.heap)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        sender = settings.open()
    except DeliveryError as exc:
        conn.send(("error", exc.message, exc.hint))
        return
    conn.send(("ready",))
    staged: dict[int, Future[_Staged]] = {}
    to_send: queue.SimpleQueue[Future[_Staged] | _Staged | None] = queue.SimpleQueue()
    sending = threading.Thread(target=_send_loop, args=(conn, sender, to_send), daemon=True)
    sending.start()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as preparing:
            while True:
                try:
                    request = conn.recv()
                except EOFError:  # the parent is gone without closing: send nothing more
                    os._exit(0)
                kind = request[0]
                if kind == "close":
                    break
                if kind == "stage":
                    staged[request[1]] = preparing.submit(_prepare, sender, request[2])
                elif kind == "send":
                    to_send.put(staged.pop(request[1]))
                elif kind == "drop":
                    staged.pop(request[1], None)
                else:
                    to_send.put((_messages(request[1]), None))
            to_send.put(None)
            sending.join()
    finally:
        sender.close()


_Staged = tuple[list[OutgoingMessage], "list[Any] | None"]  # messages, their requests


def _prepare(sender: SendGridSender, rows: list[tuple[Any, ...]]) -> _Staged:
    messages = _messages(rows)
    return messages, sender.prepare(messages)


def _send_loop(
    conn: Connection,
    sender: SendGridSender,
    to_send: queue.SimpleQueue[Future[_Staged] | _Staged | None],
) -> None:
    """Send the batches in the order they were asked for; the only writer of the pipe."""
    try:
        while (item := to_send.get()) is not None:
            messages, prepared = item.result() if isinstance(item, Future) else item
            try:
                done = sender.send_batch(messages, prepared)
                conn.send(("ok", list(map(_RESULT_FIELDS, done))))
            except SendAbortedError as stop:
                conn.send(
                    ("aborted", stop.message, stop.hint, list(map(_RESULT_FIELDS, stop.results)))
                )
    except BaseException:  # a bug: stop, so the parent's wait ends ("the sending process stopped")
        traceback.print_exc()
        os._exit(1)


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
        self._lock = threading.Lock()  # a request and its reply
        self._writing = threading.Lock()  # one message at a time into the pipe
        self._tokens = itertools.count(1)
        self._ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the child has opened its sender (its start, about 0.4 s, overlaps
        whatever the caller did since); raise what stopped it, e.g. a malformed host."""
        if self._ready:  # without the lock: a batch's reply may be awaited under it
            return
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

    def _write(self, request: tuple[Any, ...]) -> None:
        # pickled outside the lock (another batch may be writing), by pickle.dumps: plain
        # values need no ForkingPickler, whose BytesIO costs a third more for a batch
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        with self._writing:
            self._conn.send_bytes(data)

    def stage(self, messages: Sequence[OutgoingMessage]) -> int:
        """Ship a batch ahead: the child prepares its requests beside the batch being sent.
        Nothing of it leaves before ``send_batch(messages, staged=token)``; ``drop(token)``
        if it never will. Returns the token."""
        self.wait_ready()
        token = next(self._tokens)
        self._write(("stage", token, list(map(_MESSAGE_FIELDS, messages))))
        return token

    def drop(self, token: int) -> None:
        """Forget a staged batch that will not be sent."""
        with contextlib.suppress(OSError):  # the child is gone: nothing of it can leave
            self._write(("drop", token))

    def send_batch(
        self, messages: Sequence[OutgoingMessage], staged: int | None = None
    ) -> list[SendResult]:
        """Send ``messages`` (``staged``: the token :meth:`stage` gave for them) and wait
        for their results."""
        self.wait_ready()
        with self._lock:  # one batch at a time: the next reply on the pipe is this one's
            if staged is None:
                self._write(("batch", list(map(_MESSAGE_FIELDS, messages))))
            else:
                self._write(("send", staged))
            reply = self._receive()
        if reply[0] == "aborted":
            raise SendAbortedError(reply[1], _results(reply[3]), hint=reply[2])
        return _results(reply[1])

    def close(self) -> None:
        if self._process.is_alive():
            try:
                with self._lock:
                    self._write(("close",))
            except OSError:
                pass
            self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
