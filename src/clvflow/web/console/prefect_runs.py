"""Links from the console to the Prefect UI (``PREFECT_UI_URL``, else the UI beside
``PREFECT_API_URL``): each deployment's recent flow runs are read from Prefect's REST API
(``POST /flow_runs/filter``, by the run name clvflow gives them, ``<campaign> · …``), and a
ledger run links to the flow run that was running when it started. Answers are kept for
``ttl`` seconds; an API that does not answer within ``timeout`` leaves the links out."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

UI_ENV = "PREFECT_UI_URL"
API_ENV = "PREFECT_API_URL"
SLACK = dt.timedelta(seconds=5)


@dataclass(frozen=True)
class FlowRun:
    id: str
    name: str
    state: str
    start: dt.datetime | None  # naive UTC
    end: dt.datetime | None


def _utc(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


class PrefectRuns:
    def __init__(self, env: Mapping[str, str], *, timeout: float = 0.5, ttl: float = 15.0) -> None:
        api = (env.get(API_ENV) or "").rstrip("/")
        ui = (env.get(UI_ENV) or "").rstrip("/") or (api.removesuffix("/api") if api else "")
        self.api_url, self.ui_url = api, ui
        self.timeout, self.ttl = timeout, ttl
        self.problem: str | None = None
        self._kept: dict[str, tuple[float, list[FlowRun]]] = {}
        self._lock = threading.Lock()

    def run_url(self, run: FlowRun) -> str:
        return f"{self.ui_url}/runs/flow-run/{run.id}"

    def deployments_url(self) -> str | None:
        return f"{self.ui_url}/deployments" if self.ui_url else None

    def flow_runs(self, name: str) -> list[FlowRun]:
        """The latest flow runs named after campaign or journey ``name``, newest first."""
        if not self.api_url:
            return []
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and now - kept[0] < self.ttl:
                return kept[1]
        body = {
            "flow_runs": {"name": {"like_": f"{name} · "}},
            "sort": "START_TIME_DESC",
            "limit": 50,
        }
        try:
            reply = httpx.post(
                f"{self.api_url}/flow_runs/filter", json=body, timeout=self.timeout, trust_env=False
            )
            reply.raise_for_status()
            found = [self._run(raw) for raw in reply.json() if _named(raw, name)]
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            self.problem = f"the Prefect API at {self.api_url} did not answer ({exc})"
            found = []
        else:
            self.problem = None
        with self._lock:
            self._kept[name] = (now, found)
        return found

    @staticmethod
    def _run(raw: dict[str, Any]) -> FlowRun:
        state = raw.get("state") or {}
        return FlowRun(
            id=str(raw["id"]),
            name=str(raw.get("name") or ""),
            state=str(state.get("name") or raw.get("state_name") or ""),
            start=_utc(raw.get("start_time")),
            end=_utc(raw.get("end_time")),
        )


def _named(raw: object, name: str) -> bool:
    """A flow run of campaign ``name`` (its ``campaign`` parameter)."""
    if not isinstance(raw, dict):
        return False
    params = raw.get("parameters")
    return isinstance(params, dict) and params.get("campaign") == name


def flow_run_at(started: dt.datetime, runs: list[FlowRun]) -> FlowRun | None:
    """The flow run that was running at ``started`` (naive UTC)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for run in runs:
        if run.start is None:
            continue
        if run.start - SLACK <= started <= (run.end or now) + SLACK:
            return run
    return None
