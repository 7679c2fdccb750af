"""What the console's pages share: the web app's state (project, ledger, signing key), the
password check, the snapshots of the shop, results kept per key, and the Prefect links."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fastapi import Request

from clvflow.web.console.access import Access
from clvflow.web.console.clock import resolve_as_of
from clvflow.web.console.prefect_runs import PrefectRuns
from clvflow.web.console.snapshots import Kept, Snapshots
from clvflow.web.state import WebState


@dataclass
class ConsoleState:
    web: WebState
    access: Access
    snapshots: Snapshots
    prefect: PrefectRuns
    results: Kept = field(default_factory=lambda: Kept(32))  # dry runs, reports, measurements

    def as_of(self, text: str | None) -> dt.datetime:
        """``?as_of=`` as the shop's local time (see :mod:`.clock`)."""
        return resolve_as_of(text, self.web.project.config.shop.timezone)

    def close(self) -> None:
        self.snapshots.close()
        self.results.close()


def console_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state
