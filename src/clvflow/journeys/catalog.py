"""Journeys are the deployments of prefect.yaml whose ``parameters.spec`` has ``steps``;
each spec must validate as a :class:`JourneySpec`. Errors name the deployment and key."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from clvflow.campaigns.catalog import Deployment, deployments_with_spec
from clvflow.errors import ConfigError
from clvflow.project.journey_spec import JourneySpec
from clvflow.project.yamlfile import YamlDocument, dotted, validate_document
from clvflow.segments.conditions import ConditionSyntaxError, parse_condition


@dataclass(frozen=True)
class Journey:
    name: str
    spec: JourneySpec
    entrypoint: str
    schedules: tuple[dict[str, object], ...]
    line: int | None
    triggers: tuple[dict[str, object], ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    parameters: dict[str, object] = field(default_factory=dict)
    source: Deployment | None = None

    def document(self) -> tuple[YamlDocument, tuple[str | int, ...]]:
        """prefect.yaml's document and where this journey's spec is in it."""
        if self.source is None:
            return YamlDocument(Path("prefect.yaml"), None, {}), ("spec",)
        return self.source.doc, self.source.spec_loc

    @property
    def triggered(self) -> bool:
        return bool(self.triggers)


def journey_spec(deployment: Deployment) -> JourneySpec:
    """The deployment's spec, validated; ``where`` conditions parsed."""
    doc, loc = deployment.doc, deployment.spec_loc
    try:
        spec = validate_document(
            doc, JourneySpec, ConfigError, loc_prefix=loc, data=deployment.params["spec"]
        )
    except ConfigError as exc:
        raise ConfigError(
            f"journey '{deployment.name}': {exc.message}",
            path=exc.path,
            line=exc.line,
            key=exc.key,
            hint=exc.hint,
        ) from None
    for index, step in enumerate(spec.steps):
        if step.where is None:
            continue
        where = (*loc, "steps", index, "where")
        try:
            parse_condition(step.where, where)
        except ConditionSyntaxError as exc:
            raise ConfigError(
                f"journey '{deployment.name}', step '{step.name}': {exc}",
                path=doc.path,
                line=doc.line_of(exc.loc),
                key=dotted(exc.loc),
                hint=exc.hint,
            ) from None
    return spec


def load_journeys(prefect_file: Path) -> dict[str, Journey]:
    return {
        d.name: Journey(spec=journey_spec(d), source=d, **d.fields())  # type: ignore[arg-type]
        for d in deployments_with_spec(prefect_file)
        if d.is_journey
    }


def find_journey(journeys: dict[str, Journey], name: str, prefect_file: Path) -> Journey:
    if name in journeys:
        return journeys[name]
    close = difflib.get_close_matches(name, list(journeys), n=1)
    mean = f" — did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"no journey named '{name}'{mean}",
        path=prefect_file,
        hint="journeys: " + (", ".join(sorted(journeys)) or "(none)"),
    )
