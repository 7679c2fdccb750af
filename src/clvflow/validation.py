"""``clvflow validate``: every problem in a project, found before the first email leaves.

Checks clvflow.yaml, prefect.yaml (each campaign's spec, its segment and template), every
segment (compiled against the shop's columns), and every template: compiled for every
locale of the shop and rendered for real sample customers of each campaign's segment in each
locale (falling back to any customer of that locale), with the compliance check. Each
message is rendered the way a campaign run sends it (the template linked into one) and as
written; the two must be the same, or the template file and locale are reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clvflow.campaigns.catalog import Campaign, load_campaigns
from clvflow.campaigns.checks import check_deployments
from clvflow.campaigns.holdouts import template_kind
from clvflow.compliance.secret import signing_key
from clvflow.data.sources import ShopData, in_list, open_shop_data, quote_literal
from clvflow.errors import ClvflowError, ConfigError, TemplateError
from clvflow.journeys.catalog import Journey, load_journeys
from clvflow.journeys.facts import check_anchors, where_members
from clvflow.personalization.promo import promo_row
from clvflow.project.campaign_spec import CampaignSpec, PromoSpec
from clvflow.project.journey_spec import ORDER_PLACED
from clvflow.project.layout import Project
from clvflow.rendering.composer import LINK_AFTER, Composed, Composer
from clvflow.rendering.templates import TemplateLibrary
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.evaluation import evaluate_segments
from clvflow.segments.members import customer_rows

SAMPLES_PER_LOCALE = 3


@dataclass
class ValidationReport:
    notes: list[str] = field(default_factory=list)
    errors: list[ClvflowError] = field(default_factory=list)


def validate_project(project: Project, as_of: dt.datetime) -> ValidationReport:
    report = ValidationReport(notes=[f"{project.root / 'clvflow.yaml'}"])
    campaigns, journeys = _deployments(report, project)
    try:
        catalog = SegmentCatalog.load(project.segments_dir)
        data = open_shop_data(project)
    except ClvflowError as exc:
        report.errors.append(exc)
        return report
    valid: list[str] = []
    for name in catalog.names():  # compiling names each segment's own errors
        try:
            compile_segment(catalog, name, data, as_of)
            valid.append(name)
        except ClvflowError as exc:
            report.errors.append(exc)
    members: dict[str, list[str]] = {}
    try:
        members = evaluate_segments(catalog, valid, data, as_of)
    except ClvflowError as exc:
        report.errors.append(exc)
    report.notes.append(f"segments: {len(members)} of {len(catalog.names())} compile")
    library = TemplateLibrary.for_project(project)
    _compile_templates(report, library, project)
    _transactional_holdouts(report, {**campaigns, **journeys}, project)
    key = signing_key(project.state_dir, allow_local=True)
    composer = Composer(project.config.shop, data, library, key, as_of, link_at_once=True)
    steps = _journey_checks(report, journeys, catalog, data, as_of)
    targets: dict[str, Campaign | StepCampaign] = {**campaigns, **steps}
    rows_of = _sample_rows(data, targets, members, project.config.shop.locales, as_of)
    for label, campaign in targets.items():
        spec = campaign.spec
        where = label if label in steps else f"campaign '{campaign.name}'"
        if spec.segment not in catalog.segments and spec.segment != ORDER_PLACED:
            report.errors.append(
                ConfigError(
                    f"{where} uses unknown segment '{spec.segment}'",
                    path=project.prefect_file,
                    line=campaign.line,
                    hint="segments: " + ", ".join(catalog.names()),
                )
            )
        unknown = [t for t in spec.templates if t not in library.names()]
        for template in unknown:
            report.errors.append(
                ConfigError(
                    f"{where} uses unknown template '{template}'",
                    path=project.prefect_file,
                    line=campaign.line,
                    hint="templates: " + ", ".join(library.names()),
                )
            )
        if unknown:
            continue
        rows = rows_of[spec.segment]
        shown = spec.promo or (steps[label].held if label in steps else None)
        promos = {
            str(r["customer_id"]): promo_row(
                shown,
                campaign.name,
                "validate",
                str(r["customer_id"]),
                project.config.shop.currency,
                as_of,
            )
            for r in rows
            if shown is not None
        }
        composed: list[Composed] = []
        for template in spec.templates:
            composed += _render_both_ways(report, composer, template, campaign.name, rows, promos)
        report.notes.append(
            f"{where}: rendered for {len(composed)} sample customer(s), linked and as written"
        )
    _render_unused(report, targets, library, composer, data, as_of, project)
    data.close()
    return report


def _deployments(
    report: ValidationReport, project: Project
) -> tuple[dict[str, Campaign], dict[str, Journey]]:
    """prefect.yaml's campaigns and journeys, their entrypoints, schedules and triggers."""
    try:
        campaigns = load_campaigns(project.prefect_file)
        journeys = load_journeys(project.prefect_file)
    except ClvflowError as exc:
        report.errors.append(exc)
        return {}, {}
    report.notes.append(f"prefect.yaml: {len(campaigns)} campaign(s), {len(journeys)} journey(s)")
    report.errors.extend(check_deployments(project.root, project.prefect_file, campaigns))
    report.errors.extend(check_deployments(project.root, project.prefect_file, journeys, "journey"))
    return campaigns, journeys


def _transactional_holdouts(
    report: ValidationReport, deployments: Mapping[str, Campaign | Journey], project: Project
) -> None:
    """A holdout set on a campaign or journey that sends transactional mail is an error:
    such mail is never withheld."""
    for name, deployment in deployments.items():
        spec = deployment.spec
        if not spec.holdout_percent:
            continue
        for template in spec.templates:
            if template_kind(project, template) == "transactional":
                report.errors.append(
                    ConfigError(
                        f"'{name}' sends the transactional template '{template}' but sets "
                        f"holdout_percent: {spec.holdout_percent:g}",
                        path=project.prefect_file,
                        line=deployment.line,
                        key="holdout_percent",
                        hint="transactional mail is never held out: remove holdout_percent "
                        "(or set it to 0)",
                    )
                )
                break


@dataclass(frozen=True)
class StepCampaign:
    """A journey's step, checked as a campaign: its spec, and the code it shows."""

    name: str
    spec: CampaignSpec
    held: PromoSpec | None
    line: int | None


def _journey_checks(
    report: ValidationReport,
    journeys: Mapping[str, Journey],
    catalog: SegmentCatalog,
    data: ShopData,
    as_of: dt.datetime,
) -> dict[str, StepCampaign]:
    """Each journey's ``at`` dates and ``where`` conditions against the shop's data; its
    steps, labelled ``journey 'NAME', step 'STEP'``, to render as campaigns."""
    steps: dict[str, StepCampaign] = {}
    for journey in journeys.values():
        where = f"journey '{journey.name}'"
        entry = journey.spec.entry.segment
        try:
            check_anchors(data, journey)
            if entry is not None and entry not in catalog.segments:
                raise ConfigError(
                    f"{where} enters from unknown segment '{entry}'",
                    path=journey.document()[0].path,
                    line=journey.line,
                    hint="segments: " + ", ".join(catalog.names()),
                )
            for index, step in enumerate(journey.spec.steps):
                if step.where is not None:
                    where_members(data, catalog, journey, index, as_of)
        except ClvflowError as exc:
            report.errors.append(exc)
        for index, step in enumerate(journey.spec.steps):
            label = f"{where}, step '{step.name}'"
            steps[label] = StepCampaign(
                journey.name,
                journey.spec.step_campaign(index),
                journey.spec.holds_promo(index),
                journey.line,
            )
    return steps


def _compile_templates(
    report: ValidationReport, library: TemplateLibrary, project: Project
) -> None:
    """Every template compiles for every locale of the shop, each locale with its own file."""
    shop = project.config.shop
    for name in library.names():
        translated = set(library.locales_of(name))
        for locale in shop.locales:
            try:
                library.get(name, locale)
            except TemplateError as exc:
                report.errors.append(exc)
            if locale != shop.default_locale and locale not in translated:
                report.errors.append(
                    TemplateError(
                        f"no '{locale}' version: customers with locale {locale} would get "
                        f"the {shop.default_locale} text",
                        path=project.templates_dir / f"{name}.{locale}.html.j2",
                        hint=f"add the file, or drop '{locale}' from shop.locales in clvflow.yaml",
                    )
                )
    report.notes.append(
        f"templates: {len(library.names())} parse in {len(project.config.shop.locales)} locale(s)"
    )


def _render_unused(
    report: ValidationReport,
    campaigns: Mapping[str, Campaign | StepCampaign],
    library: TemplateLibrary,
    composer: Composer,
    data: ShopData,
    as_of: dt.datetime,
    project: Project,
) -> None:
    """Templates no campaign uses yet: rendered for a customer of every locale."""
    used = {t for c in campaigns.values() for t in c.spec.templates}
    unused = [n for n in library.names() if n not in used]
    if not unused:
        return
    rows = customer_rows(data, _samples(data, [], project.config.shop.locales), as_of)
    for name in unused:
        _render_both_ways(report, composer, name, "validate", rows, None)
    report.notes.append(
        f"templates without a campaign ({', '.join(unused)}): rendered for "
        f"{len(rows)} sample customer(s) each, linked and as written"
    )


def _render_both_ways(
    report: ValidationReport,
    composer: Composer,
    template: str,
    campaign: str,
    rows: list[dict[str, Any]],
    promos: dict[str, dict[str, Any]] | None,
) -> list[Composed]:
    """``template`` for each row as a campaign run sends it (the composer links at once)
    and as written; each error once, and one for each (template file, locale) whose two
    renderings differ. The messages as a run sends them."""
    batch = [("validate", row) for row in rows]
    linked = composer.compose(template, campaign, batch, promos)
    written = composer.compose(template, campaign, batch, promos, as_written=True)
    known = {error.render() for error in report.errors}
    differ: set[str] = set()  # locales reported as differing (once each, with one customer)
    for item, reference in zip(linked, written, strict=True):
        error = item.error
        if error is None and item.locale not in differ:
            error = _difference(composer, template, item, reference)
            if error is not None:
                differ.add(item.locale)
        if error is not None and error.render() not in known:
            known.add(error.render())
            report.errors.append(error)
    return linked


_PARTS = (
    ("subject", "subject"),
    ("preheader", "preheader"),
    ("html", "HTML"),
    ("text", "text part"),
)


def _difference(
    composer: Composer, template: str, linked: Composed, written: Composed
) -> TemplateError | None:
    """An error naming the template file and locale when a message rendered linked is not
    the same as rendered as written (they must be equal strings, part by part)."""
    if linked.email is None or written.email is None:
        if written.error is None or linked.error is not None:
            return None  # both fail alike: the linked render fell back to the one as written
        what = f"renders linked but fails as written ({written.error.message})"
    else:
        parts = [
            name
            for key, name in _PARTS
            if getattr(linked.email, key) != getattr(written.email, key)
        ]
        if not parts:
            return None
        what = f"renders its {' and '.join(parts)} differently linked and as written"
    return TemplateError(
        f"template '{template}' (locale {linked.locale}) {what} for customer {linked.customer_id}",
        path=composer.templates.get(template, linked.locale).html_path,
        hint=f"campaign runs send the linked rendering from a template's {LINK_AFTER}th "
        "message on, so this is a bug in clvflow's template linker: please report it with "
        "the template and the layout and partials it uses",
    )


def _sample_rows(
    data: ShopData,
    campaigns: Mapping[str, Campaign | StepCampaign],
    members: Mapping[str, list[str]],
    locales: list[str],
    as_of: dt.datetime,
) -> dict[str, list[dict[str, Any]]]:
    """Segment → the rows of its sample customers, for every segment a campaign uses
    (one query for all of them)."""
    samples_of = {
        segment: _samples(data, members.get(segment, []), locales)
        for segment in {c.spec.segment for c in campaigns.values()}
    }
    wanted = list(dict.fromkeys(cid for ids in samples_of.values() for cid in ids))
    row_of = {str(r["customer_id"]): r for r in customer_rows(data, wanted, as_of)}
    return {
        segment: [row_of[cid] for cid in ids if cid in row_of]
        for segment, ids in samples_of.items()
    }


def _samples(data: ShopData, member_list: list[str], locales: list[str]) -> list[str]:
    """Up to a few members per locale; any customer of a locale with no member."""
    if "locale" not in data.columns["customers"]:
        return member_list[:SAMPLES_PER_LOCALE] or _any_customers(data, "", 1)
    candidates = member_list[: SAMPLES_PER_LOCALE * 200]
    by_locale: dict[str, list[str]] = {}
    for cid, locale in data.rows(
        f"{data.with_clause()}SELECT customer_id, locale FROM customers "
        f"WHERE customer_id IN {in_list(candidates)} ORDER BY customer_id"
    ):
        by_locale.setdefault(str(locale), []).append(str(cid))
    chosen: list[str] = []
    for locale in locales:
        picked = by_locale.get(locale, [])[:SAMPLES_PER_LOCALE]
        chosen += picked or _any_customers(data, f"WHERE locale = {quote_literal(locale)} ", 1)
    return list(dict.fromkeys(chosen))


def _any_customers(data: ShopData, where: str, limit: int) -> list[str]:
    rows = data.rows(
        f"{data.with_clause()}SELECT customer_id FROM customers {where}"
        f"ORDER BY customer_id LIMIT {limit}"
    )
    return [str(r[0]) for r in rows]
