"""What ``clvflow run NAME --dry-run`` decides at an instant: the segment's members through
the run's own plan (suppressed, already sent, capped, holdout, outside the send window),
counted as the run's summary counts them, per variant and per locale; and the first
recipients' messages rendered as the run renders them. Nothing is claimed or recorded."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.counts import count_rows
from clvflow.campaigns.run import campaign_job, new_summary
from clvflow.errors import SegmentError
from clvflow.ledger.store import Ledger
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.render import planned_rows
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace
from clvflow.web.console.compose import Message, compose
from clvflow.web.console.snapshot import Snapshot

SAMPLE = 5


@dataclass
class DryRun:
    campaign: str
    segment: str
    as_of: dt.datetime
    summary: RunSummary
    counts: list[dict[str, str | int]]  # the run summary's table
    by_locale: Counter[str] = field(default_factory=Counter)
    recipients: list[Message] = field(default_factory=list)  # the first ones, rendered


def dry_run(snapshot: Snapshot, ledger: Ledger, campaign: Campaign, sample: int = SAMPLE) -> DryRun:
    project, spec = snapshot.project, campaign.spec
    entry = snapshot.entry(spec.segment)
    if entry is None or not entry.predicate:
        raise SegmentError(
            entry.error if entry is not None and entry.error else f"no segment '{spec.segment}'",
            hint=f"campaign '{campaign.name}' uses segment '{spec.segment}'",
        )
    job = campaign_job(project, campaign, snapshot.as_of, dry_run=True)
    summary = new_summary(job, spec.segment)
    members = snapshot.member_frame(spec.segment)
    with snapshot.rendering() as (library, composer):
        workspace = Workspace(project, snapshot.data, ledger, library, composer)
        plan = pipeline.plan(workspace, job, members)
        summary.planned_as(plan)
        summary.by_variant.update(summary.planned_by_variant)
        first = plan.send.head(sample)
        rows = planned_rows(first)
        found = rows([str(c) for c in first["customer_id"].tolist()])
        recipients = [
            compose(
                composer,
                project.config.shop,
                str(template),
                found[str(cid)],
                campaign=campaign.name,
                spec=spec,
                variant=str(variant or ""),
            )
            for cid, variant, template in zip(
                first["customer_id"], first["variant"], first["template"], strict=True
            )
        ]
        by_locale: Counter[str] = Counter()
        if len(plan.send):
            values = plan.send.get("locale")
            if values is None:
                by_locale[composer.locale_for({})] = len(plan.send)
            else:
                for value, n in values.value_counts(dropna=False).items():
                    text = value if isinstance(value, str) else None
                    by_locale[composer.locale_for({"locale": text})] += int(n)
    summary.by_locale.update(by_locale)
    summary.sent = summary.planned
    return DryRun(
        campaign.name, spec.segment, snapshot.as_of, summary, count_rows(summary),
        by_locale, recipients,
    )  # fmt: skip
