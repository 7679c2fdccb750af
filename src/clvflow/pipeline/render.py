"""Render: a batch of claims → messages ready to leave, each with its customer's row, A/B
variant, promo code, unsubscribe link and headers; a message that cannot be rendered is a
``failed`` outcome with the template's error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from clvflow.data.sources import ShopData
from clvflow.delivery.message import OutgoingMessage
from clvflow.ledger.store import Claim, Ledger, Outcome
from clvflow.personalization.orders import OrderView
from clvflow.personalization.promo import promo_rows
from clvflow.pipeline.job import Job
from clvflow.planning.variants import assign_variants
from clvflow.project.config import ShopConfig
from clvflow.rendering.composer import Composer
from clvflow.segments.members import MemberRows, customer_rows

Row = dict[str, Any]
Rows = Callable[[Sequence[str]], dict[str, Row]]  # customer ids → their rows


@dataclass
class Rendered:
    """A batch rendered, not yet handed over: the messages, render failures, each
    message's (locale, variant), and the promo codes drawn for it (stored with the mark)."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    tags: dict[int, tuple[str, str]] = field(default_factory=dict)
    codes: list[dict[str, Any]] = field(default_factory=list)


def planned_rows(frame: pd.DataFrame) -> Rows:
    """Rows from the plan's frame, converted a batch at a time."""
    positions = {str(c): i for i, c in enumerate(frame["customer_id"].tolist())}
    converted = MemberRows(frame.drop(columns=["variant", "template"], errors="ignore"))

    def rows(ids: Sequence[str]) -> dict[str, Row]:
        found = converted.rows([positions[c] for c in ids])
        return {str(row["customer_id"]): row for row in found}

    return rows


def stored_rows(data: ShopData, job: Job) -> Rows:
    """Rows read from the shop's data (a batch rendered in another process than its plan)."""

    def rows(ids: Sequence[str]) -> dict[str, Row]:
        return {str(row["customer_id"]): row for row in customer_rows(data, list(ids), job.as_of)}

    return rows


def render(
    composer: Composer,
    ledger: Ledger,
    shop: ShopConfig,
    job: Job,
    batch: Sequence[Claim],
    rows: Rows,
    orders: dict[str, OrderView] | None = None,
) -> Rendered:
    """Messages for the batch, each variant with its template. ``orders`` (customer →
    order) replaces the latest order, e.g. with the one that triggered the run."""
    out = Rendered()
    if not batch:
        return out
    found = rows([c.customer_id for c in batch])
    promos, out.codes = promo_codes(ledger, shop, job, batch)
    variants = assign_variants(job.name, [c.customer_id for c in batch], job.spec.variants)
    groups: dict[str | None, list[Claim]] = {}
    for claim, variant in zip(batch, variants, strict=True):
        groups.setdefault(variant, []).append(claim)
    for variant, claims in groups.items():
        composed = composer.compose(
            job.spec.template_of(variant),
            job.name,
            [(c.occurrence, found[c.customer_id]) for c in claims],
            promos,
            orders=orders,
        )
        for claim, item in zip(claims, composed, strict=True):
            out.tags[claim.id] = (item.locale, variant or "")
            if item.email is None:
                out.failures.append(Outcome(claim.id, "failed", f"render: {item.error}"[:500]))
                continue
            headers = {**item.headers, **dict(job.headers)}
            if job.step:
                headers["X-Clvflow-Step"] = job.step
            if variant:
                headers["X-Clvflow-Variant"] = variant
            out.messages.append(
                OutgoingMessage(
                    message_id=claim.id,
                    campaign=job.name,
                    occurrence=claim.occurrence,
                    customer_id=claim.customer_id,
                    to_email=claim.email,
                    to_name=display_name(found[claim.customer_id]),
                    from_email=shop.from_email,
                    from_name=shop.from_name,
                    reply_to=shop.reply_to,
                    subject=item.email.subject,
                    html=item.email.html,
                    text=item.email.text,
                    headers=headers,
                    categories=(job.name,),
                    layout=f"{item.email.template}/{item.locale}",
                    step=job.step or "",
                )
            )
    return out


def promo_codes(
    ledger: Ledger, shop: ShopConfig, job: Job, batch: Sequence[Claim]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Customer → their code (the one already issued for this occurrence, or a fresh one),
    and the fresh ones, which the ledger stores as the batch is marked ``sending``."""
    spec = job.spec.promo
    if spec is None:
        return (held_codes(ledger, job, batch) if job.promo_step else {}), []
    existing: dict[str, dict[str, Any]] = {}
    if not job.dry_run:
        for occurrence in {c.occurrence for c in batch}:
            ids = [c.customer_id for c in batch if c.occurrence == occurrence]
            existing.update(ledger.promo_codes_for(job.name, occurrence, ids))
    pairs = [(c.occurrence, c.customer_id) for c in batch if c.customer_id not in existing]
    fresh = promo_rows(spec, job.name, pairs, shop.currency, job.as_of)
    existing.update({str(r["customer_id"]): r for r in fresh})
    return existing, [] if job.dry_run else fresh


def held_codes(ledger: Ledger, job: Job, batch: Sequence[Claim]) -> dict[str, dict[str, Any]]:
    """Customer → the code their journey entry was given at ``job.promo_step``."""
    found: dict[str, dict[str, Any]] = {}
    by_holder: dict[str, list[str]] = {}
    for claim in batch:
        entry = claim.occurrence.rsplit("/", 1)[0]
        by_holder.setdefault(f"{entry}/{job.promo_step}", []).append(claim.customer_id)
    for occurrence, ids in by_holder.items():
        found.update(ledger.promo_codes_for(job.name, occurrence, ids))
    return found


def display_name(row: Row) -> str:
    parts = [row.get("first_name"), row.get("last_name")]
    return " ".join(str(p) for p in parts if isinstance(p, str) and p)
