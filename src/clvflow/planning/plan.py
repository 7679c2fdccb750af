"""Plan a run before anything is sent.

members − suppressed (``accepts_marketing: false``, invalid address, unsubscribed, bounced,
spam report) − already sent under the resend policy − over the frequency cap − holdout −
outside the send window. Each member lands in exactly one bucket, and each skip keeps its
reason. The members to send to get their A/B variant and its template.

Times: a run's ``as_of`` is naive shop-local time (like the shop's data), the ledger writes
naive UTC. The look-back windows (``every: N days``, the frequency cap) start at
``as_of − N days`` in shop time, converted to UTC before they are compared with the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd

from clvflow.ledger.store import Ledger
from clvflow.planning.addresses import valid_addresses
from clvflow.planning.holdout import held_out, in_holdout
from clvflow.planning.variants import assign_variants
from clvflow.planning.window import outside_window
from clvflow.project.campaign_spec import CampaignSpec, Every
from clvflow.project.config import FrequencyCap

__all__ = ["Plan", "in_holdout", "ledger_time", "plan_run", "unreachable", "with_variants"]

SUPPRESSION_REASONS = {
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "spam_report": "spam_report",
}
WAITING = "outside_send_window"


def ledger_time(local: dt.datetime, timezone: str) -> dt.datetime:
    """A naive shop-local time as the ledger stores times: naive UTC.

    A local time that does not exist (the hour skipped in spring) or exists twice (the hour
    repeated in autumn) resolves with ``fold=0``, as :mod:`zoneinfo` does.
    """
    aware = local.replace(tzinfo=ZoneInfo(timezone))
    return aware.astimezone(dt.UTC).replace(tzinfo=None)


@dataclass
class Plan:
    campaign: str
    members: int
    send: pd.DataFrame  # member rows to send to, with occurrence, variant and template
    holdout: pd.DataFrame
    skips: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # (occurrence, customer, reason), those outside the send window included
    already_sent: int = 0
    held_out_earlier: int = 0
    waiting: int = 0  # outside the send window: planned again by a later run

    def skipped_by_reason(self) -> Counter[str]:
        """Skips by reason; members waiting for the send window are counted apart."""
        counts = Counter(reason for _, _, reason in self.skips if reason != WAITING)
        if self.already_sent:
            counts["already_sent"] = self.already_sent
        if self.held_out_earlier:
            counts["held_out_earlier"] = self.held_out_earlier
        return counts


def unreachable(frame: pd.DataFrame, ledger: Ledger, *, marketing: bool) -> pd.Series:
    """Per member (``email`` stripped): why no message may reach them (no marketing
    consent, an invalid address, a suppression: unsubscribed, bounced, spam report), else NA."""
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def mark(mask: pd.Series, why: str) -> None:
        reason.loc[mask & reason.isna()] = why

    if marketing and "accepts_marketing" in frame:
        mark(
            frame["accepts_marketing"].map(lambda v: v is False or v == "false").astype(bool),
            "no_marketing_consent",
        )
    emails = frame["email"].tolist()
    valid = pd.Series(valid_addresses(emails), index=frame.index, dtype=bool)
    mark(~valid, "invalid_address")
    suppressed = ledger.suppressed(emails)
    if suppressed:
        kinds = frame["email"].str.lower().map(suppressed)
        for raw, why in SUPPRESSION_REASONS.items():
            mark(kinds == raw, why)
        mark(kinds.notna(), "suppressed")
    return reason


def occurrences(members: pd.DataFrame, spec: CampaignSpec, as_of: dt.datetime) -> pd.Series:
    """Each member's occurrence: given by the caller (an ``occurrence`` column), else from
    the resend policy."""
    if "occurrence" in members:
        return members["occurrence"].astype("string")
    if spec.resend == "per_order":
        return members["last_order_id"].astype("string").fillna("no-order")
    return pd.Series(spec.occurrence(as_of), index=members.index, dtype="string")


def plan_run(
    campaign: str,
    spec: CampaignSpec,
    members: pd.DataFrame,
    ledger: Ledger,
    as_of: dt.datetime,
    *,
    marketing: bool,
    cap: FrequencyCap | None,
    timezone: str,
    holdout_percent: float = 0.0,
) -> Plan:
    """Split ``members`` (one row per customer: customer_id, email, ...) into buckets;
    ``holdout_percent`` is the campaign's resolved share (see :mod:`.holdout`)."""
    frame = members.copy()
    frame["occurrence"] = occurrences(frame, spec, as_of)
    frame["email"] = frame["email"].astype("string").fillna("").str.strip()
    reason = unreachable(frame, ledger, marketing=marketing)

    def mark(mask: pd.Series, why: str) -> None:
        reason.loc[mask & reason.isna()] = why

    ids = frame["customer_id"].tolist()
    keys = list(zip(frame["occurrence"].tolist(), ids, strict=True))
    existing = ledger.existing(campaign, keys)
    done = pd.Series([k in existing for k in keys], index=frame.index)
    was_held = pd.Series([existing.get(k) == "holdout" for k in keys], index=frame.index)
    if isinstance(spec.resend, Every):
        # held out within the period counts as sent: the holdout gets a row as often as
        # the treated get a message, so both groups are measured alike
        since = ledger_time(as_of - dt.timedelta(days=spec.resend.days), timezone)
        recent = frame["customer_id"].map(ledger.sent_since(ids, since, campaign)).notna()
        recently_held = frame["customer_id"].map(ledger.held_since(ids, since, campaign)).notna()
        was_held |= recently_held & ~recent & ~done
        done |= recent | recently_held
    already = done & reason.isna()

    if marketing and cap is not None:
        since = ledger_time(as_of - dt.timedelta(days=cap.days), timezone)
        counts = ledger.sent_since(ids, since)
        over = frame["customer_id"].map(lambda c: counts.get(c, 0) >= cap.max)
        mark(over & ~already, "frequency_cap")

    per_order = frame["occurrence"].tolist() if spec.resend == "per_order" else None
    held = pd.Series(
        held_out(campaign, ids, holdout_percent, per_order), index=frame.index, dtype=bool
    )
    holdout_mask = held & reason.isna() & ~already
    waiting = outside_window(frame, spec.send_window, as_of, timezone)
    mark(waiting & ~holdout_mask & ~already, WAITING)
    send_mask = reason.isna() & ~already & ~holdout_mask

    skipped = frame[reason.notna() & ~already]
    skips = list(
        zip(
            skipped["occurrence"].tolist(),
            skipped["customer_id"].tolist(),
            reason[skipped.index].tolist(),
            strict=True,
        )
    )
    return Plan(
        campaign=campaign,
        members=len(frame),
        send=with_variants(frame[send_mask], campaign, spec),
        holdout=with_variants(frame[holdout_mask], campaign, spec, holdout=True),
        skips=skips,
        already_sent=int((already & ~was_held).sum()),
        held_out_earlier=int((already & was_held).sum()),
        waiting=int((reason == WAITING).sum()),
    )


def with_variants(
    frame: pd.DataFrame, campaign: str, spec: CampaignSpec, *, holdout: bool = False
) -> pd.DataFrame:
    """``frame`` with each member's A/B variant (None without variants, and in the
    holdout) and its template."""
    frame = frame.reset_index(drop=True)
    ids = frame["customer_id"].tolist()
    variants = [None] * len(ids) if holdout else assign_variants(campaign, ids, spec.variants)
    templates = {v: spec.template_of(v) for v in set(variants)}
    frame["variant"] = pd.Series(variants, dtype=object)
    frame["template"] = pd.Series([templates[v] for v in variants], dtype=object)
    return frame
