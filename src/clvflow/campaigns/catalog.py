"""Campaigns are the deployments in prefect.yaml; each one's ``parameters`` hold a
``spec`` that must validate as a :class:`CampaignSpec`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from clvflow.errors import ConfigError
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.yamlfile import YamlDocument, read_yaml, validate_document


@dataclass(frozen=True)
class Campaign:
    name: str
    spec: CampaignSpec
    entrypoint: str
    schedules: tuple[dict[str, object], ...]
    line: int | None
    triggers: tuple[dict[str, object], ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    parameters: dict[str, object] = field(default_factory=dict)

    @property
    def triggered(self) -> bool:
        """Started by events (e.g. an order placed), not by the segment on a schedule."""
        return bool(self.triggers)


@dataclass(frozen=True)
class Deployment:
    """A deployment of prefect.yaml whose parameters carry a ``spec``."""

    name: str
    raw: dict[str, object]
    params: dict[str, object]
    loc: tuple[str | int, ...]
    doc: YamlDocument

    @property
    def is_journey(self) -> bool:
        spec = self.params["spec"]
        return isinstance(spec, dict) and "steps" in spec

    @property
    def spec_loc(self) -> tuple[str | int, ...]:
        return (*self.loc, "parameters", "spec")

    def fields(self) -> dict[str, object]:
        """What campaigns and journeys share: the deployment's schedules, triggers, tags."""
        raw = self.raw
        return {
            "name": self.name,
            "entrypoint": str(raw.get("entrypoint", "")),
            "schedules": tuple(s for s in _list(raw.get("schedules")) if isinstance(s, dict)),
            "line": self.doc.line_of(self.loc),
            "triggers": tuple(t for t in _list(raw.get("triggers")) if isinstance(t, dict)),
            "tags": tuple(str(t) for t in _list(raw.get("tags"))),
            "description": str(raw.get("description") or ""),
            "parameters": {k: v for k, v in self.params.items() if k != "spec"},
        }


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def deployments_with_spec(prefect_file: Path) -> list[Deployment]:
    """Every deployment of prefect.yaml whose parameters carry a ``spec`` (campaigns and
    journeys), each name once and equal to its ``parameters.campaign``."""
    if not prefect_file.is_file():
        raise ConfigError("prefect.yaml is missing", path=prefect_file)
    doc = read_yaml(prefect_file, ConfigError)
    deployments = doc.data.get("deployments") if isinstance(doc.data, dict) else None
    if not isinstance(deployments, list):
        raise ConfigError("prefect.yaml has no 'deployments:' list", path=prefect_file, line=1)
    out: dict[str, Deployment] = {}
    for index, raw in enumerate(deployments):
        loc = ("deployments", index)
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ConfigError(
                "each deployment needs a name", path=prefect_file, line=doc.line_of(loc)
            )
        params = raw.get("parameters") or {}
        if not isinstance(params, dict) or "spec" not in params:
            continue
        name = raw["name"]
        if name in out:
            raise ConfigError(
                f"two deployments are named '{name}'",
                path=prefect_file,
                line=doc.line_of((*loc, "name")),
            )
        if params.get("campaign", name) != name:
            raise ConfigError(
                f"parameters.campaign is '{params.get('campaign')}' but the deployment is '{name}'",
                path=prefect_file,
                line=doc.line_of((*loc, "parameters", "campaign")),
                hint="make them equal: the campaign name keys the ledger",
            )
        out[name] = Deployment(name, raw, params, loc, doc)
    return list(out.values())


def load_campaigns(prefect_file: Path) -> dict[str, Campaign]:
    """Every deployment of prefect.yaml whose parameters carry a campaign ``spec`` (one
    without ``steps``: those are journeys)."""
    return {
        d.name: Campaign(spec=_spec(d.doc, d.params["spec"], d.spec_loc), **d.fields())  # type: ignore[arg-type]
        for d in deployments_with_spec(prefect_file)
        if not d.is_journey
    }


def _spec(doc: YamlDocument, data: object, loc: tuple[str | int, ...]) -> CampaignSpec:
    return validate_document(doc, CampaignSpec, ConfigError, loc_prefix=loc, data=data)


def find_campaign(campaigns: dict[str, Campaign], name: str, prefect_file: Path) -> Campaign:
    if name in campaigns:
        return campaigns[name]
    close = difflib.get_close_matches(name, list(campaigns), n=1)
    mean = f" — did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"no campaign named '{name}'{mean}",
        path=prefect_file,
        hint="campaigns: " + (", ".join(sorted(campaigns)) or "(none)"),
    )
