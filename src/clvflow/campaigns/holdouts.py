"""The holdout share a campaign's or journey's runs use, read outside a run (for the
journey list and the report): its spec's ``holdout_percent``, else clvflow.yaml's
``measurement.holdout_percent``, and 0 when it sends a transactional template."""

from __future__ import annotations

from clvflow.errors import TemplateError
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.journey_spec import JourneySpec
from clvflow.project.layout import Project
from clvflow.rendering.frontmatter import read_front_matter
from clvflow.rendering.templates import HTML_SUFFIX


def template_kind(project: Project, name: str) -> str:
    """``marketing`` or ``transactional``, from the front matter of ``<name>.html.j2``
    (a missing or broken file reads as marketing: a run would stop on it anyway)."""
    path = project.templates_dir / f"{name}{HTML_SUFFIX}"
    if not path.is_file():
        return "marketing"
    try:
        front = read_front_matter(path, path.read_text(encoding="utf-8"))
    except TemplateError:
        return "marketing"
    return "marketing" if front is None else front.kind


def resolved_holdout(project: Project, spec: CampaignSpec | JourneySpec) -> float:
    """The share of ``spec``'s customers (a journey: entries) its runs hold out."""
    transactional = any(template_kind(project, t) == "transactional" for t in spec.templates)
    return project.config.measurement.holdout_for(spec, transactional=transactional)
