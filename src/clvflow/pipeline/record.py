"""Record: every outcome of a batch in the ledger (sent, failed with its reason, unknown),
with the subject and locale it went out in, and the batch's counts for the summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from clvflow.delivery.base import SendResult
from clvflow.ledger.store import Ledger, Outcome
from clvflow.pipeline.render import Rendered
from clvflow.pipeline.summary import BatchResult


def record(
    ledger: Ledger,
    rendered: Rendered,
    results: Sequence[SendResult],
    lease: tuple[str, float] | None = None,
    dry_run: bool = False,
    at: dt.datetime | None = None,
) -> BatchResult:
    """Store the outcomes, finished ``at`` (the run's clock; renewing ``lease``, (run id,
    seconds), in the same transaction) and count them by status, locale and variant."""
    by_id = {m.message_id: m for m in rendered.messages}
    outcomes = [
        Outcome(
            r.message_id,
            r.status,
            r.reason,
            r.provider_id,
            subject=by_id[r.message_id].subject,
            locale=rendered.tags[r.message_id][0],
        )
        for r in results
    ] + [
        Outcome(o.message_id, o.status, o.reason, locale=rendered.tags[o.message_id][0])
        for o in rendered.failures
    ]
    if not dry_run:
        ledger.record(outcomes, lease, at)
    result = BatchResult()
    for o in outcomes:
        locale, variant = rendered.tags[o.message_id]
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
