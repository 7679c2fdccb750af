"""Checks of prefect.yaml's campaign deployments beyond the parameter model: the
entrypoint exists, schedules name a cron and a real time zone, triggers have the shape
Prefect needs. Nothing here imports Prefect (``clvflow validate`` stays fast)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clvflow.errors import ConfigError

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


def _defines(source: str, name: str) -> bool:
    pattern = (
        rf"(^def {re.escape(name)}\b|^{re.escape(name)}\s*=|\bimport\b.*\b{re.escape(name)}\b)"
    )
    return re.search(pattern, source, re.M) is not None


class Deployed(Protocol):
    """What the checks read of a campaign or a journey."""

    @property
    def name(self) -> str: ...
    @property
    def entrypoint(self) -> str: ...
    @property
    def schedules(self) -> tuple[dict[str, object], ...]: ...
    @property
    def line(self) -> int | None: ...
    @property
    def triggers(self) -> tuple[dict[str, object], ...]: ...


def check_deployments(
    root: Path, prefect_file: Path, campaigns: Mapping[str, Deployed], kind: str = "campaign"
) -> list[ConfigError]:
    errors: list[ConfigError] = []

    def fail(campaign: Deployed, message: str, hint: str) -> None:
        errors.append(
            ConfigError(
                f"{kind} '{campaign.name}': {message}",
                path=prefect_file,
                line=campaign.line,
                hint=hint,
            )
        )

    for campaign in campaigns.values():
        path_text, _, func = campaign.entrypoint.partition(":")
        if not path_text or not func:
            fail(
                campaign,
                f"entrypoint '{campaign.entrypoint}' is not 'file.py:function'",
                "e.g. flows/campaign.py:campaign_flow",
            )
        else:
            source = root / path_text
            if not source.is_file():
                fail(
                    campaign,
                    f"entrypoint file '{path_text}' does not exist",
                    "entrypoints are relative to the project folder",
                )
            elif not _defines(source.read_text(encoding="utf-8"), func):
                fail(
                    campaign,
                    f"'{path_text}' defines no '{func}'",
                    "name a flow the file defines or imports",
                )
        for schedule in campaign.schedules:
            cron = schedule.get("cron")
            if cron is not None:
                fields = str(cron).split()
                if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
                    fail(
                        campaign,
                        f"'{cron}' is not a cron expression",
                        "five fields: minute hour day month weekday, e.g. '0 10 * * 1'",
                    )
            zone = schedule.get("timezone")
            if zone is not None:
                try:
                    ZoneInfo(str(zone))
                except (ZoneInfoNotFoundError, ValueError):
                    fail(
                        campaign,
                        f"schedule time zone '{zone}' is not an IANA name",
                        "e.g. Europe/Budapest",
                    )
        for trigger in campaign.triggers:
            if trigger.get("type", "event") != "event":
                fail(
                    campaign,
                    f"trigger type '{trigger.get('type')}' is not supported",
                    "use 'type: event'",
                )
            expect = trigger.get("expect")
            if not isinstance(expect, list) or not expect:
                fail(
                    campaign,
                    "a trigger needs 'expect: [event names]'",
                    "e.g. expect: [shop.order.placed]",
                )
            if not isinstance(trigger.get("parameters", {}), dict):
                fail(
                    campaign,
                    "a trigger's 'parameters' must be a mapping",
                    "e.g. parameters: {order: '{{ event.payload }}'}",
                )
    return errors
