"""Serve every deployment of prefect.yaml from this process: cron schedules and event
triggers fire on this machine without a work pool or a worker (``clvflow serve``).

Each deployment keeps its name, entrypoint, parameters, schedules, triggers and tags from
prefect.yaml; flows that take a ``project`` parameter get this project's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.runner import Runner
from prefect.schedules import Cron, Schedule

from clvflow.campaigns.catalog import load_campaigns
from clvflow.errors import ConfigError
from clvflow.journeys.catalog import load_journeys
from clvflow.project.layout import Project
from clvflow.project.yamlfile import read_yaml


def raw_deployments(prefect_file: Path) -> list[dict[str, Any]]:
    load_campaigns(prefect_file)  # the campaigns' and journeys' specs must be valid first
    load_journeys(prefect_file)
    data = read_yaml(prefect_file, ConfigError).data
    deployments = data.get("deployments") if isinstance(data, dict) else None
    return [d for d in deployments or [] if isinstance(d, dict)]


def _schedules(raw: dict[str, Any]) -> list[Schedule]:
    out = []
    for item in raw.get("schedules") or []:
        if isinstance(item, dict) and item.get("cron"):
            out.append(
                Cron(
                    str(item["cron"]),
                    timezone=item.get("timezone"),
                    active=bool(item.get("active", True)),
                )
            )
    return out


def _triggers(raw: dict[str, Any]) -> list[Any]:
    return [
        DeploymentEventTrigger(**{k: v for k, v in item.items() if k != "type"})
        for item in raw.get("triggers") or []
        if isinstance(item, dict)
    ]


def _flow(project: Project, entrypoint: str) -> Flow[Any, Any]:
    path, _, func = entrypoint.partition(":")
    try:
        loaded: Flow[Any, Any] = load_flow_from_entrypoint(f"{project.root / path}:{func}")
    except Exception as exc:  # a missing file or name, or an import error in the flow
        raise ConfigError(
            f"cannot load the flow '{entrypoint}': {exc}", path=project.prefect_file
        ) from None
    return loaded


def build_deployments(project: Project, only: list[str] | None = None) -> list[RunnerDeployment]:
    """Runner deployments for prefect.yaml (or only the named ones)."""
    out: list[RunnerDeployment] = []
    for raw in raw_deployments(project.prefect_file):
        name = str(raw.get("name"))
        if only and name not in only:
            continue
        flow = _flow(project, str(raw.get("entrypoint", "")))
        params = dict(raw.get("parameters") or {})
        if "project" in flow.parameters.properties:
            params["project"] = str(project.root)
        tags = [str(t) for t in raw.get("tags") or []]
        if "campaign" in params:
            tags.append(f"campaign:{params['campaign']}")
        deployment = flow.to_deployment(
            name=name,
            description=raw.get("description"),
            tags=tags,
            parameters=params,
            schedules=_schedules(raw),
            triggers=_triggers(raw),
        )
        assert isinstance(deployment, RunnerDeployment)  # a synchronous call
        out.append(deployment)
    if only:
        unknown = set(only) - {d.name for d in out}
        if unknown:
            raise ConfigError(
                f"no deployment named {', '.join(sorted(unknown))}", path=project.prefect_file
            )
    return out


class _Runner(Runner):
    """Prefect's runner, stopped by SIGTERM as by Ctrl-C: the event loop's tasks are
    cancelled and the runner leaves its context (its deployments paused), instead of
    Prefect's handler, which exits from inside the loop and leaves its shutdown undone."""

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        self._logger.info("SIGTERM received, shutting down")
        signal.raise_signal(signal.SIGINT)


def register_deployments(
    project: Project, only: list[str] | None = None, limit: int | None = None
) -> tuple[Runner, list[str]]:
    """A runner with the deployments registered: each deployment and the automations of its
    triggers exist on the Prefect server when this returns, so an event emitted from now on
    starts its flow. Returns the runner and the deployments' names."""
    deployments = build_deployments(project, only)
    runner = _Runner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)
    return runner, [d.name for d in deployments]


def run_until_stopped(runner: Runner) -> None:
    """Run the registered deployments' flow runs until Ctrl-C or SIGTERM (blocks)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.start())
