"""Run one campaign: evaluate → plan → claim → render and send in batches → record → report.

Each stage is a method, so the Prefect flow can wrap stages in tasks and tests can call
them without Prefect. ``run_campaign`` chains them for plain use.

A batch needs nothing from the run that planned it but the ledger rows it claimed: a
``CampaignRun`` opened in another process with the same ``run_id`` (``worker=True``)
loads the batch's customers itself and sends it, so batches can fan out over processes.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd

from clvflow.campaigns.catalog import Campaign
from clvflow.campaigns.overlap import send_overlapped
from clvflow.campaigns.summary import BatchResult, RunSummary
from clvflow.campaigns.variants import assign_variants
from clvflow.campaigns.window import outside_window
from clvflow.compliance.secret import signing_key
from clvflow.data.sources import ShopData, open_shop_data
from clvflow.delivery.base import SendAbortedError, Sender, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.process import SenderProcess
from clvflow.delivery.senders import open_sender
from clvflow.heap import end_bulk_work, keep_out_of_sight, start_bulk_work
from clvflow.ledger.store import Claim, Ledger, Outcome
from clvflow.personalization.orders import OrderView
from clvflow.personalization.promo import promo_row, promo_rows
from clvflow.planning.plan import Plan, plan_run
from clvflow.project.layout import Project
from clvflow.rendering.composer import Composer
from clvflow.rendering.templates import TemplateLibrary
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import MemberRows, customer_rows, member_frame

__all__ = ["BatchResult", "CampaignRun", "PreparedBatch", "RunSummary", "run_campaign"]

WAITING = "outside_send_window"


class PreparedBatch(NamedTuple):
    """A rendered batch, not yet handed over: messages, render failures, (locale, variant)
    per message, and what an earlier attempt of the batch already recorded."""

    messages: list[OutgoingMessage]
    failures: list[Outcome]
    tags: dict[int, tuple[str, str]]
    earlier: BatchResult
    codes: Sequence[dict[str, Any]] = ()  # promo codes drawn for it: stored with the mark


def local_now(timezone: str) -> dt.datetime:
    """Now in the shop's time zone, as a naive local timestamp like the shop's data."""
    return dt.datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)


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
        worker: bool = False,
    ) -> None:
        self.project = project
        self.campaign = campaign
        self.spec = campaign.spec
        cfg = project.config
        self.as_of = (as_of or local_now(cfg.shop.timezone)).replace(tzinfo=None)
        self.dry_run = dry_run
        self.run_id = run_id or uuid.uuid4().hex
        self.worker = worker
        self.batch_size = self.spec.batch_size or cfg.limits.batch_size
        self.lease_seconds = cfg.limits.run_lease_seconds
        self._summary_lock = threading.Lock()
        self._handover = threading.Lock()  # mark sending + hand over: one batch at a time
        self._gc_settings: tuple[int, int, int] | None = None  # while entered (clvflow.heap)
        self.summary = RunSummary(
            campaign=campaign.name,
            run_id=self.run_id,
            as_of=self.as_of,
            dry_run=dry_run,
            segment=self.spec.segment,
            occurrence=self.spec.occurrence(self.as_of),
        )
        self._sender = sender
        self.data: ShopData | None = None
        self.ledger: Ledger | None = None
        self.members: pd.DataFrame | None = None
        self.orders: dict[str, OrderView] = {}  # the triggering order, when there is one
        self._rows: dict[str, dict[str, Any]] = {}  # customer → row, while its batch renders
        self._planned: pd.DataFrame = pd.DataFrame()  # the members this run plans to send
        self._planned_at: dict[str, int] = {}  # customer → their position in ``_planned``
        self._planned_rows: MemberRows | None = None  # ``_planned`` as rows, when first read
        self._variants: dict[str, str | None] = {}
        self._waiting: list[tuple[str, str, str]] = []
        self._tables: Future[None] | None = None  # the per-run lookup tables, being built

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> CampaignRun:
        self._gc_settings = start_bulk_work()
        cfg = self.project.config
        self.templates = TemplateLibrary.for_project(self.project)
        kinds = {self.templates.get(name, None).front.kind for name in self.spec.templates}
        self.kind = "marketing" if "marketing" in kinds else "transactional"
        self.segments = SegmentCatalog.load(self.project.segments_dir)
        self.segments.get(self.spec.segment)
        self.key = signing_key(self.project.state_dir, allow_local=cfg.delivery.backend == "outbox")
        self.data = open_shop_data(self.project)
        self.ledger = Ledger(self.project.ledger_url)
        self.composer = Composer(cfg.shop, self.data, self.templates, self.key, self.as_of)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gc_settings is not None:
            end_bulk_work(self._gc_settings)
            self._gc_settings = None
        if self._sender is not None and not self.dry_run:
            self._sender.close()
        self._stop_tables()  # never close the shop's data under a running query
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
        self._planned, self._planned_at, self._planned_rows = pd.DataFrame(), {}, None
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

    def use_members(self, members: pd.DataFrame, orders: dict[str, OrderView]) -> None:
        """Plan for these members instead of the segment's (a triggered run: one customer
        and the order that triggered it)."""
        self.members = members
        self.orders = dict(orders)
        self.summary.members = len(members)

    def plan(self) -> Plan:
        assert self.ledger is not None
        if not self.dry_run:
            # after a dead run: re-plan what it never handed over, report what it left unknown
            released, unknown = self.ledger.reconcile(self.campaign.name)
            self.summary.released = released
            self.summary.earlier_unknown = unknown
        members = self.members if self.members is not None else self.evaluate()
        if len(members) and self._tables is None and self.data and self.data.con:
            self._build_tables_meanwhile()
        plan = plan_run(
            self.campaign.name,
            self.spec,
            members,
            self.ledger,
            self.as_of,
            marketing=self.kind == "marketing",
            cap=self.project.config.limits.frequency_cap,
            timezone=self.project.config.shop.timezone,
        )
        self.summary.skipped = plan.skipped_by_reason()
        self.summary.holdout = len(plan.holdout)
        late = outside_window(
            plan.send, self.spec.send_window, self.as_of, self.project.config.shop.timezone
        )
        if late.any():
            waiting = plan.send[late]
            self._waiting = [
                (str(occ), str(cid), WAITING)
                for occ, cid in zip(
                    _values(waiting, "occurrence"), _values(waiting, "customer_id"), strict=True
                )
            ]
            plan.send = plan.send[~late]
        self.summary.waiting = len(self._waiting)
        self.summary.planned = len(plan.send)
        ids = [str(c) for c in _values(plan.send, "customer_id")]
        self._variants = dict(
            zip(ids, assign_variants(self.campaign.name, ids, self.spec.variants), strict=True)
        )
        self.summary.planned_by_variant = Counter(v for v in self._variants.values() if v)
        if not self.summary.planned:
            self._stop_tables()  # nothing to render
        return plan

    def _build_tables_meanwhile(self) -> None:
        """Build the per-run lookup tables (latest orders, recommendations) in a thread
        while the run plans and claims. They are queries of the in-process engine, which
        runs them off the GIL on the other core; nothing else reads the shop's data until
        the first render waits for them (``_tables_built``)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tables")
        self._tables = pool.submit(self.composer.prepare_tables)
        pool.shutdown(wait=False)

    def _stop_tables(self) -> None:
        """Nothing will be rendered: interrupt the tables' queries (each one as it starts)
        and wait for the thread; their error, an interruption, is of no interest."""
        tables, self._tables = self._tables, None
        while tables is not None and not tables.done():
            if self.data is not None and self.data.con is not None:
                self.data.con.interrupt()
            wait([tables], timeout=0.05)

    def _tables_built(self) -> None:
        """Wait for ``_build_tables_meanwhile``; its error, if any, is raised here."""
        if self._tables is not None:
            tables, self._tables = self._tables, None
            tables.result()

    def claim(self, plan: Plan) -> list[Claim]:
        """Record skips and holdout, claim the messages to send (nothing on a dry run).
        A sender still starting (its own process) is waited for first: if it cannot
        start, nothing is claimed."""
        assert self.ledger is not None
        self._planned = plan.send.reset_index(drop=True)
        self._planned_at = {str(c): i for i, c in enumerate(_values(self._planned, "customer_id"))}
        self._planned_rows = None
        self._rows = {}  # a batch's rows when it renders (``_load_rows``)
        if self.dry_run:
            frame = self._planned
            fake = [
                Claim(-i - 1, str(occ), str(cid), str(email))
                for i, (occ, cid, email) in enumerate(
                    zip(
                        *(_values(frame, c) for c in ("occurrence", "customer_id", "email")),
                        strict=True,
                    )
                )
            ]
            self.composer.expect([c.customer_id for c in fake])
            return fake
        ledger = self.ledger
        # a missing key, a bad backend or a sender that cannot start fails here, before
        # anything is claimed
        wait_ready = getattr(self.sender, "wait_ready", None)
        if wait_ready is not None:
            wait_ready()
        ledger.start_run(
            self.run_id,
            self.campaign.name,
            self.spec.occurrence(self.as_of),
            self.as_of,
            False,
            self.lease_seconds,
        )
        ledger.record_skips(self.run_id, self.campaign.name, [*plan.skips, *self._waiting])
        name = self.campaign.name
        ledger.claim_columns(self.run_id, name, self._claim_rows(plan.holdout), "holdout")
        claims = ledger.claim_columns(self.run_id, name, self._claim_rows(plan.send))
        lost = len(plan.send) - len(claims)
        if lost:
            self.summary.skipped["claimed_by_another_run"] += lost
            self.summary.planned -= lost
            won = {c.customer_id for c in claims}
            self.summary.planned_by_variant = Counter(
                v for c, v in self._variants.items() if v and c in won
            )
        self.composer.expect([c.customer_id for c in claims])  # batches render in this order
        keep_out_of_sight()  # the run's plan and claims live until it ends (clvflow.heap)
        return claims

    def record_reasons(self, items: Sequence[tuple[str, str, str]]) -> None:
        """(occurrence, customer, reason) of members that get no message, recorded without
        planning (a triggered run whose customer or order nobody knows)."""
        for _, _, reason in items:
            self.summary.skipped[reason] += 1
        if self.dry_run or self.ledger is None:
            return
        self.ledger.start_run(
            self.run_id,
            self.campaign.name,
            self.summary.occurrence,
            self.as_of,
            False,
            self.lease_seconds,
        )
        self.ledger.record_skips(self.run_id, self.campaign.name, list(items))

    def _claim_rows(self, frame: pd.DataFrame) -> dict[str, list[Any]]:
        """The ledger's columns for ``frame``'s messages (``Ledger.claim_columns``)."""
        ids = [str(c) for c in _values(frame, "customer_id")]
        variants = [self._variants.get(c) for c in ids]
        templates = {v: self.spec.template_of(v) for v in set(variants)}
        locales = (
            [None if pd.isna(loc) else str(loc) for loc in _values(frame, "locale")]
            if "locale" in frame
            else [None] * len(frame)
        )
        return {
            "occurrence": [str(occ) for occ in _values(frame, "occurrence")],
            "customer_id": ids,
            "email": [str(email) for email in _values(frame, "email")],
            "kind": [self.kind] * len(ids),
            "template": [templates[v] for v in variants],
            "variant": variants,
            "locale": locales,
        }

    def batches(self, claims: Sequence[Claim]) -> list[list[Claim]]:
        size = self.batch_size
        return [list(claims[i : i + size]) for i in range(0, len(claims), size)]

    def _load_rows(self, claims: Sequence[Claim]) -> None:
        """The claims' customer rows: from this run's plan, a batch at a time as it renders
        (so 100,000 rows are never held at once); in a worker, with their variants, from
        the shop's data."""
        assert self.data is not None
        missing = [c.customer_id for c in claims if c.customer_id not in self._rows]
        planned = [self._planned_at[c] for c in missing if c in self._planned_at]
        if planned:
            if self._planned_rows is None:
                self._planned_rows = MemberRows(self._planned)
            rows = self._planned_rows.rows(planned)
            self._rows.update((str(r["customer_id"]), r) for r in rows)
            missing = [c for c in missing if c not in self._rows]
        if not missing:
            return
        rows = customer_rows(self.data, missing, self.as_of)
        by_claim = {c.customer_id: c for c in claims}
        for row in rows:
            cid = str(row["customer_id"])
            self._rows[cid] = {**row, "occurrence": by_claim[cid].occurrence}
        variants = assign_variants(self.campaign.name, missing, self.spec.variants)
        self._variants.update(zip(missing, variants, strict=True))

    def send_batch(self, batch: Sequence[Claim]) -> BatchResult:
        """Render and send one batch; record every outcome.

        If the backend refuses the whole run (bad key), what was sent is recorded, the
        messages never handed over are released, and the error propagates.
        """
        return self.deliver_batch(self.prepare_batch(batch))

    def prepare_batch(self, batch: Sequence[Claim]) -> PreparedBatch:
        """The first half of :meth:`send_batch`: the batch's rows still to send, rendered.
        Nothing is handed over yet (the rows stay ``claimed``)."""
        assert self.data is not None and self.ledger is not None
        earlier = BatchResult()
        if not self.dry_run:
            batch, earlier = self._handed_over_before(batch)
        messages, failures, tags, codes = self.render_batch(batch)
        for claim in batch:  # rendered: a retry of the batch loads them again
            self._rows.pop(claim.customer_id, None)
        return PreparedBatch(messages, failures, tags, earlier, codes)

    def deliver_batch(self, prepared: PreparedBatch) -> BatchResult:
        """The second half: mark ``sending``, hand over, record every outcome.

        Two lanes may deliver at once (campaigns/overlap.py): one batch at a time is
        marked and handed over (a batch waiting for the sender is never ``sending``, so a
        crash cannot turn it into ``unknown``), while the other lane records the previous
        batch's outcomes."""
        assert self.ledger is not None
        messages, failures, tags, earlier, codes = prepared
        results: list[SendResult] = []
        if not self.dry_run and messages:
            try:
                results = self._hand_over(messages, codes)
            except SendAbortedError as stop:
                aborted = self._record(stop.results, messages, failures, tags)
                with self._summary_lock:
                    self.summary.add(aborted)
                done = {r.message_id for r in stop.results}
                self.ledger.revert_sending(
                    [m.message_id for m in messages if m.message_id not in done]
                )
                raise
        lease = (self.run_id, self.lease_seconds)
        result = self._record(results, messages, failures, tags, lease)  # + the lease renewed
        for name in ("sent", "failed", "unknown"):
            setattr(result, name, getattr(result, name) + getattr(earlier, name))
        result.failures.update(earlier.failures)
        with self._summary_lock:  # two delivery lanes (campaigns/overlap.py)
            self.summary.add(result)
        return result

    def _hand_over(
        self, messages: Sequence[OutgoingMessage], codes: Sequence[dict[str, Any]]
    ) -> list[SendResult]:
        """Mark the batch ``sending`` (storing its new promo codes in the same commit) and
        send it. A sender process gets the batch ahead (``stage``: it prepares the requests
        while the batch before is on the wire); it goes only once marked."""
        assert self.ledger is not None
        ids = [m.message_id for m in messages]
        if not isinstance(self.sender, SenderProcess):
            with self._handover:
                self.ledger.mark_sending(ids, codes)
                return self.sender.send_batch(messages)
        token: int | None = self.sender.stage(messages)
        try:
            with self._handover:
                self.ledger.mark_sending(ids, codes)
                staged, token = token, None  # the sender's from here on
                return self.sender.send_batch(messages, staged=staged)
        finally:
            if token is not None:  # never marked: it must not go
                self.sender.drop(token)

    def _handed_over_before(self, batch: Sequence[Claim]) -> tuple[list[Claim], BatchResult]:
        """A retried batch: only rows still ``claimed`` may go to the sender. Rows an
        earlier attempt left ``sending`` may have left: they become ``unknown``, never
        re-sent; outcomes it recorded are counted again for this attempt's result."""
        assert self.ledger is not None
        statuses = self.ledger.statuses_of([c.id for c in batch])
        fresh = [c for c in batch if statuses.get(c.id) == "claimed"]
        earlier = BatchResult()
        if len(fresh) == len(batch):
            return fresh, earlier
        maybe_left = [c.id for c in batch if statuses.get(c.id) == "sending"]
        self.ledger.record(
            [Outcome(i, "unknown", "an earlier attempt of this batch failed after handing it "
                     "to the sender; it may have left") for i in maybe_left]
        )  # fmt: skip
        for claim in batch:
            status = "unknown" if claim.id in maybe_left else statuses.get(claim.id)
            if status == "sent":
                earlier.sent += 1
            elif status == "failed":
                earlier.failed += 1
                earlier.failures["recorded by an earlier attempt"] += 1
            elif status == "unknown":
                earlier.unknown += 1
        return fresh, earlier

    def _record(
        self,
        results: Sequence[SendResult],
        messages: Sequence[OutgoingMessage],
        failures: list[Outcome],
        tags: dict[int, tuple[str, str]],
        lease: tuple[str, float] | None = None,
    ) -> BatchResult:
        """Store the outcomes (renewing ``lease`` in the same transaction); ``tags`` maps a
        message to its (locale, variant)."""
        assert self.ledger is not None
        if self.dry_run:
            results = [SendResult(m.message_id, "sent") for m in messages]
        by_id = {m.message_id: m for m in messages}
        outcomes = [
            Outcome(r.message_id, r.status, r.reason, r.provider_id) for r in results
        ] + failures
        outcomes = [
            Outcome(
                o.message_id,
                o.status,
                o.reason,
                o.provider_id,
                subject=by_id[o.message_id].subject if o.message_id in by_id else None,
                locale=tags[o.message_id][0] if o.message_id in tags else None,
            )
            for o in outcomes
        ]
        if not self.dry_run:
            self.ledger.record(outcomes, lease)
        result = BatchResult()
        for o in outcomes:
            locale, variant = tags.get(o.message_id, ("", ""))
            if o.status == "sent":
                result.sent += 1
                result.by_locale[locale] += 1
                if variant:
                    result.by_variant[variant] += 1
            elif o.status == "failed":
                result.failed += 1
                result.failures[(o.reason or "unknown")[:80]] += 1
                if variant:
                    result.failed_by_variant[variant] += 1
            elif o.status == "unknown":
                result.unknown += 1
        return result

    def release_unsent(self, claims: Sequence[Claim]) -> None:
        """After an abort: give back every claim that was never handed to the sender."""
        if self.ledger is not None and not self.dry_run:
            self.summary.released += self.ledger.release([c.id for c in claims])

    def render_batch(
        self, batch: Sequence[Claim]
    ) -> tuple[
        list[OutgoingMessage], list[Outcome], dict[int, tuple[str, str]], list[dict[str, Any]]
    ]:
        """Messages for the batch (each variant with its template), render failures, each
        message's (locale, variant), and the promo codes drawn for it (to store)."""
        cfg = self.project.config
        self._tables_built()
        self._load_rows(batch)
        promos, fresh = self._promos(batch)
        groups: dict[str | None, list[Claim]] = {}
        for claim in batch:
            groups.setdefault(self._variants.get(claim.customer_id), []).append(claim)
        messages: list[OutgoingMessage] = []
        failures: list[Outcome] = []
        tags: dict[int, tuple[str, str]] = {}
        for variant, claims in groups.items():
            composed = self.composer.compose(
                self.spec.template_of(variant),
                self.campaign.name,
                [(c.occurrence, self._rows[c.customer_id]) for c in claims],
                promos,
                orders=self.orders or None,
            )
            for claim, item in zip(claims, composed, strict=True):
                tags[claim.id] = (item.locale, variant or "")
                if item.email is None:
                    failures.append(Outcome(claim.id, "failed", f"render: {item.error}"[:500]))
                    continue
                headers = dict(item.headers)
                if variant:
                    headers["X-Clvflow-Variant"] = variant
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
                        headers=headers,
                        categories=(self.campaign.name,),
                        layout=f"{item.email.template}/{item.locale}",
                    )
                )
        return messages, failures, tags, fresh

    def write_samples(self, claims: Sequence[Claim]) -> dict[str, str]:
        """Render the first message of each variant into ``.clvflow/samples/`` (linked from
        the run's summary); nothing is sent or recorded."""
        self._tables_built()
        firsts: dict[str | None, Claim] = {}
        for claim in claims:
            firsts.setdefault(self._variants.get(claim.customer_id), claim)
        self._load_rows(list(firsts.values()))
        folder = self.project.state_dir / "samples" / _safe(self.campaign.name)
        out: dict[str, str] = {}
        for variant, claim in firsts.items():
            item = self.composer.compose(
                self.spec.template_of(variant),
                self.campaign.name,
                [(claim.occurrence, self._rows[claim.customer_id])],
                self._sample_promo(claim),
                orders=self.orders or None,
            )[0]
            if item.email is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.run_id[:12]}-{_safe(variant or 'default')}.html"
            path.write_text(item.email.html, encoding="utf-8")
            out[variant or ""] = str(path)
        self.summary.samples = out
        return out

    def _sample_promo(self, claim: Claim) -> dict[str, dict[str, Any]]:
        spec = self.spec.promo
        if spec is None:
            return {}
        currency = self.project.config.shop.currency
        row = promo_row(spec, self.campaign.name, "sample", claim.customer_id, currency, self.as_of)
        return {claim.customer_id: {**row, "code": f"{spec.prefix}-SAMPLE"}}

    def _promos(
        self, batch: Sequence[Claim]
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """Customer → their code: the one already issued, or a fresh one; and the fresh
        ones, which the ledger stores as the batch is marked ``sending``."""
        spec = self.spec.promo
        if spec is None or not batch:
            return {}, []
        assert self.ledger is not None
        currency = self.project.config.shop.currency
        if self.dry_run:
            pairs = [(c.occurrence, c.customer_id) for c in batch]
            rows = promo_rows(spec, self.campaign.name, pairs, currency, self.as_of)
            return {str(r["customer_id"]): r for r in rows}, []
        existing: dict[str, dict[str, Any]] = {}
        for occ in {c.occurrence for c in batch}:
            ids = [c.customer_id for c in batch if c.occurrence == occ]
            existing.update(self.ledger.promo_codes_for(self.campaign.name, occ, ids))
        fresh = promo_rows(
            spec,
            self.campaign.name,
            [(c.occurrence, c.customer_id) for c in batch if c.customer_id not in existing],
            currency,
            self.as_of,
        )
        existing.update({str(r["customer_id"]): r for r in fresh})
        return existing, fresh

    def finish(self, status: str = "finished") -> RunSummary:
        if not self.dry_run and self.ledger is not None:
            self.ledger.finish_run(self.run_id, status, self.summary.as_dict())
        return self.summary


def _values(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column as a list (one conversion: iterating an Arrow-backed column costs a Python
    call per value)."""
    return frame[column].tolist()


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


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
    owned = None
    if sender is None and not dry_run and project.config.delivery.backend == "sendgrid":
        # the sender in its own process: batch k is sent while batch k + 1 renders
        sender = owned = open_sender(project, own_process=True)
    try:
        return _run(project, campaign, as_of, dry_run, sender, progress)
    finally:
        if owned is not None:
            owned.close()  # also when the run could not even start


def _run(
    project: Project,
    campaign: Campaign,
    as_of: dt.datetime | None,
    dry_run: bool,
    sender: Sender | None,
    progress: Callable[[int, int], None] | None,
) -> RunSummary:
    with CampaignRun(project, campaign, as_of=as_of, dry_run=dry_run, sender=sender) as run:
        plan = run.plan()
        claims = run.claim(plan)
        batches = run.batches(claims)
        try:
            if getattr(run.sender, "waits_off_the_gil", False) and not dry_run:
                send_overlapped(run, batches, progress)
            else:
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
