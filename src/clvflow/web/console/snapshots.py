"""The console's snapshots (:class:`.snapshot.Snapshot`), one per (as-of, data fingerprint):
made on first use (requests that arrive meanwhile wait for the same one), then their
composer's tables prepared in a thread of their own (a preview is likely next), the
``keep`` latest kept open; and results computed from one (a dry run, a report), kept per
key."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

from clvflow.project.layout import Project
from clvflow.web.console.fingerprint import data_fingerprint
from clvflow.web.console.snapshot import Snapshot

Key = tuple[dt.datetime, str]
log = logging.getLogger(__name__)


def _prepare(snapshot: Snapshot) -> None:
    try:
        snapshot.prepare_rendering()
    except Exception:  # the first preview tries again, and shows the error
        log.exception("the console could not prepare the composer's tables")


class Kept:
    """Values by key, each computed once (concurrent callers of one key wait for it), the
    ``keep`` most recently used kept; ``close`` is called on those let go."""

    def __init__(self, keep: int, close: Callable[[Any], None] | None = None) -> None:
        self.keep = keep
        self._close = close
        self._lock = threading.Lock()
        self._ready: OrderedDict[Hashable, Any] = OrderedDict()
        self._pending: dict[Hashable, Future[Any]] = {}
        self._stopped = False

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._ready:
                self._ready.move_to_end(key)
                return self._ready[key]
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:
                pending = self._pending[key] = Future()
        if not owner:
            return pending.result()
        try:
            value = make()
        except BaseException as error:
            with self._lock:
                del self._pending[key]
            pending.set_exception(error)
            raise
        let_go: list[Any] = []
        with self._lock:
            del self._pending[key]
            if self._stopped:
                let_go.append(value)
            else:
                self._ready[key] = value
                while len(self._ready) > self.keep:
                    let_go.append(self._ready.popitem(last=False)[1])
        pending.set_result(value)
        for old in let_go:
            if self._close is not None:
                self._close(old)
        return value

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            values = list(self._ready.values())
            self._ready.clear()
        for value in values:
            if self._close is not None:
                self._close(value)


class Snapshots:
    def __init__(self, project: Project, keep: int = 2) -> None:
        self.project = project
        self._kept = Kept(keep, close=lambda s: s.close())

    def key(self, as_of: dt.datetime) -> Key:
        return (as_of, data_fingerprint(self.project))

    def get(self, as_of: dt.datetime) -> Snapshot:
        snapshot: Snapshot = self._kept.get(self.key(as_of), lambda: self._make(as_of))
        return snapshot

    def _make(self, as_of: dt.datetime) -> Snapshot:
        snapshot = Snapshot(self.project, as_of)
        thread = threading.Thread(
            target=_prepare, args=(snapshot,), name="clvflow-console-render", daemon=True
        )
        thread.start()
        return snapshot

    def close(self) -> None:
        self._kept.close()
