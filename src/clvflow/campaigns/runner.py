"""Run one campaign: evaluate → plan → claim → render and send in batches → record → report.

Each stage is a method, so the Prefect flow can wrap stages in tasks and tests can call
them without Prefect. ``run_campaign`` chains them for plain use.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from clvflow.campaigns.catalog import Campaign
from clvflow.compliance.secret import signing_key
from clvflow.data.sources import ShopData, open_shop_data
from clvflow.delivery.base import SendAbortedError, Sender, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.senders import open_sender
from clvflow.ledger.store import Claim, Ledger, Outcome
from clvflow.personalization.promo import promo_row
from clvflow.planning.plan import Plan, plan_run
from clvflow.project.layout import Project
from clvflow.rendering.composer import Composer
from clvflow.rendering.templates import TemplateLibrary
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import member_frame, records


def local_now(timezone: str) -> dt.datetime:
    """Now in the shop's time zone, as a naive local timestamp like the shop's data."""
    return dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)


@dataclass
class RunSummary:
    campaign: str
    run_id: str
    as_of: dt.datetime
    dry_run: bool
    segment: str
    members: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    holdout: int = 0
    planned: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    earlier_unknown: int = 0
    released: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    by_locale: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "segment": self.segment,
            "members": self.members,
            "skipped": dict(self.skipped),
            "holdout": self.holdout,
            "planned": self.planned,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "earlier_unknown": self.earlier_unknown,
            "released": self.released,
            "failures": dict(self.failures),
            "by_locale": dict(self.by_locale),
        }


class CampaignRun:
    """One run of one campaign against one project. Use as a context manager."""

    def __init__(
        self,
        project: Project,
        campaign: Campaign,
        *,
        as_of: dt.datetime | None = None,
        dry_run: bool = False,
        run_id: str | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.project = project
        self.campaign = campaign
        self.spec = campaign.spec
        cfg = project.config
        self.as_of = (as_of or local_now(cfg.shop.timezone)).replace(tzinfo=None)
        self.dry_run = dry_run
        self.run_id = run_id or uuid.uuid4().hex
        self.batch_size = self.spec.batch_size or cfg.limits.batch_size
        self.lease_seconds = cfg.limits.run_lease_seconds
        self.summary = RunSummary(
            campaign=campaign.name,
            run_id=self.run_id,
            as_of=self.as_of,
            dry_run=dry_run,
            segment=self.spec.segment,
        )
        self._sender = sender
        self.data: ShopData | None = None
        self.ledger: Ledger | None = None
        self.members: pd.DataFrame | None = None
        self._rows: dict[str, dict[str, Any]] = {}

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> CampaignRun:
        cfg = self.project.config
        self.templates = TemplateLibrary(self.project.templates_dir, cfg.shop.default_locale)
        self.kind = self.templates.get(self.spec.template, None).front.kind
        self.segments = SegmentCatalog.load(self.project.segments_dir)
        self.segments.get(self.spec.segment)
        self.key = signing_key(self.project.state_dir, allow_local=cfg.delivery.backend == "outbox")
        self.data = open_shop_data(self.project)
        self.ledger = Ledger(self.project.ledger_url)
        self.composer = Composer(cfg.shop, self.data, self.templates, self.key, self.as_of)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sender is not None and not self.dry_run:
            self._sender.close()
        if self.data is not None:
            self.data.close()
        if self.ledger is not None:
            self.ledger.close()
        # Prefect may hold on to this object (a task parameter) until the process exits;
        # drop what wraps native resources so nothing outlives the run.
        self.data = None
        self.ledger = None
        self.members = None
        self._rows = {}
        self.__dict__.pop("composer", None)

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = open_sender(self.project)
        return self._sender

    # -- stages -------------------------------------------------------------------------
    def evaluate(self) -> pd.DataFrame:
        assert self.data is not None
        compiled = compile_segment(self.segments, self.spec.segment, self.data, self.as_of)
        self.members = member_frame(self.data, compiled, self.as_of)
        self.summary.members = len(self.members)
        return self.members

    def plan(self) -> Plan:
        assert self.ledger is not None
        if not self.dry_run:
            # after a dead run: re-plan what it never handed over, report what it left unknown
            released, unknown = self.ledger.reconcile(self.campaign.name)
            self.summary.released = released
            self.summary.earlier_unknown = unknown
        members = self.members if self.members is not None else self.evaluate()
        plan = plan_run(
            self.campaign.name,
            self.spec,
            members,
            self.ledger,
            self.as_of,
            marketing=self.kind == "marketing",
            cap=self.project.config.limits.frequency_cap,
        )
        self.summary.skipped = plan.skipped_by_reason()
        self.summary.holdout = len(plan.holdout)
        self.summary.planned = len(plan.send)
        return plan

    def claim(self, plan: Plan) -> list[Claim]:
        """Record skips and holdout, claim the messages to send (nothing on a dry run)."""
        assert self.ledger is not None
        self._rows = {str(r["customer_id"]): r for r in records(plan.send)}
        if self.dry_run:
            return [
                Claim(-i - 1, str(r["occurrence"]), cid, str(r["email"]))
                for i, (cid, r) in enumerate(self._rows.items())
            ]
        ledger = self.ledger
        _ = self.sender  # a missing key or bad backend fails here, before anything is claimed
        ledger.start_run(
            self.run_id,
            self.campaign.name,
            self.spec.occurrence(self.as_of),
            self.as_of,
            False,
            self.lease_seconds,
        )
        ledger.record_skips(self.run_id, self.campaign.name, plan.skips)
        ledger.claim(self.run_id, self.campaign.name, self._claim_rows(plan.holdout), "holdout")
        claims = ledger.claim(self.run_id, self.campaign.name, self._claim_rows(plan.send))
        lost = len(plan.send) - len(claims)
        if lost:
            self.summary.skipped["claimed_by_another_run"] += lost
            self.summary.planned -= lost
        return claims

    def _claim_rows(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {
                "occurrence": str(occ),
                "customer_id": str(cid),
                "email": str(email),
                "kind": self.kind,
                "template": self.spec.template,
                "locale": None if pd.isna(loc) else str(loc),
            }
            for occ, cid, email, loc in zip(
                frame["occurrence"],
                frame["customer_id"],
                frame["email"],
                frame["locale"] if "locale" in frame else [None] * len(frame),
                strict=True,
            )
        ]

    def batches(self, claims: Sequence[Claim]) -> list[list[Claim]]:
        size = self.batch_size
        return [list(claims[i : i + size]) for i in range(0, len(claims), size)]

    def send_batch(self, batch: Sequence[Claim]) -> tuple[int, int]:
        """Render and send one batch; record every outcome. Returns (sent, failed).

        If the backend refuses the whole run (bad key), what was sent is recorded, the
        messages never handed over are released, and the error propagates.
        """
        assert self.data is not None and self.ledger is not None
        messages, failures = self.render_batch(batch)
        results: list[SendResult] = []
        if not self.dry_run:
            self.ledger.mark_sending([m.message_id for m in messages])
            try:
                results = self.sender.send_batch(messages)
            except SendAbortedError as stop:
                self._record(stop.results, messages, failures)
                done = {r.message_id for r in stop.results}
                self.ledger.revert_sending(
                    [m.message_id for m in messages if m.message_id not in done]
                )
                raise
            self.ledger.renew_lease(self.run_id, self.lease_seconds)
        return self._record(results, messages, failures)

    def _record(
        self,
        results: Sequence[SendResult],
        messages: Sequence[OutgoingMessage],
        failures: list[Outcome],
    ) -> tuple[int, int]:
        assert self.ledger is not None
        outcomes = [
            Outcome(r.message_id, r.status, r.reason, r.provider_id) for r in results
        ] + failures
        by_id = {m.message_id: m for m in messages}
        outcomes = [
            Outcome(
                o.message_id,
                o.status,
                o.reason,
                o.provider_id,
                subject=by_id[o.message_id].subject if o.message_id in by_id else None,
            )
            for o in outcomes
        ]
        if not self.dry_run:
            self.ledger.record(outcomes)
        sent = len(messages) if self.dry_run else sum(o.status == "sent" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        for o in outcomes:
            if o.status == "failed":
                self.summary.failures[(o.reason or "unknown")[:80]] += 1
        self.summary.sent += sent
        self.summary.failed += failed
        self.summary.unknown += sum(o.status == "unknown" for o in outcomes)
        return sent, failed

    def release_unsent(self, claims: Sequence[Claim]) -> None:
        """After an abort: give back every claim that was never handed to the sender."""
        if self.ledger is not None and not self.dry_run:
            self.summary.released += self.ledger.release([c.id for c in claims])

    def render_batch(self, batch: Sequence[Claim]) -> tuple[list[OutgoingMessage], list[Outcome]]:
        cfg = self.project.config
        composed = self.composer.compose(
            self.spec.template,
            self.campaign.name,
            [(c.occurrence, self._rows[c.customer_id]) for c in batch],
            self._promos(batch),
        )
        messages: list[OutgoingMessage] = []
        failures: list[Outcome] = []
        for claim, item in zip(batch, composed, strict=True):
            if item.email is None:
                failures.append(Outcome(claim.id, "failed", f"render: {item.error}"[:500]))
                continue
            self.summary.by_locale[item.locale] += 1
            messages.append(
                OutgoingMessage(
                    message_id=claim.id,
                    campaign=self.campaign.name,
                    occurrence=claim.occurrence,
                    customer_id=claim.customer_id,
                    to_email=claim.email,
                    to_name=display_name(self._rows[claim.customer_id]),
                    from_email=cfg.shop.from_email,
                    from_name=cfg.shop.from_name,
                    reply_to=cfg.shop.reply_to,
                    subject=item.email.subject,
                    html=item.email.html,
                    text=item.email.text,
                    headers=item.headers,
                    categories=(self.campaign.name,),
                )
            )
        return messages, failures

    def _promos(self, batch: Sequence[Claim]) -> dict[str, dict[str, Any]]:
        """A fresh code per claimed message (kept in the ledger), or the one already issued."""
        spec = self.spec.promo
        if spec is None or not batch:
            return {}
        assert self.ledger is not None
        currency = self.project.config.shop.currency
        if self.dry_run:
            rows = [
                promo_row(
                    spec, self.campaign.name, c.occurrence, c.customer_id, currency, self.as_of
                )
                for c in batch
            ]
            return {str(r["customer_id"]): r for r in rows}
        existing: dict[str, dict[str, Any]] = {}
        for occ in {c.occurrence for c in batch}:
            ids = [c.customer_id for c in batch if c.occurrence == occ]
            existing.update(self.ledger.promo_codes_for(self.campaign.name, occ, ids))
        fresh = [
            promo_row(spec, self.campaign.name, c.occurrence, c.customer_id, currency, self.as_of)
            for c in batch
            if c.customer_id not in existing
        ]
        self.ledger.add_promo_codes(fresh)
        existing.update({str(r["customer_id"]): r for r in fresh})
        return existing

    def finish(self, status: str = "finished") -> RunSummary:
        if not self.dry_run and self.ledger is not None:
            self.ledger.finish_run(self.run_id, status, self.summary.as_dict())
        return self.summary


def display_name(row: dict[str, Any]) -> str:
    parts = [row.get("first_name"), row.get("last_name")]
    return " ".join(str(p) for p in parts if isinstance(p, str) and p)


def run_campaign(
    project: Project,
    campaign: Campaign,
    *,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run a campaign without Prefect (the flow wraps the same stages in tasks)."""
    with CampaignRun(project, campaign, as_of=as_of, dry_run=dry_run, sender=sender) as run:
        plan = run.plan()
        claims = run.claim(plan)
        batches = run.batches(claims)
        try:
            for index, batch in enumerate(batches, start=1):
                run.send_batch(batch)
                if progress is not None:
                    progress(index, len(batches))
        except BaseException:
            run.release_unsent(claims)
            run.finish("failed")
            raise
        return run.finish()


def batch_count(total: int, size: int) -> int:
    return math.ceil(total / size) if size else 0
