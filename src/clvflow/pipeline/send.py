"""Send: mark a rendered batch ``sending`` (with the promo codes it carries, in one commit)
and hand it to the sender. A batch is never ``sending`` before it goes, so a crash cannot
turn a message that never left into ``unknown``; one that may have left never goes again."""

from __future__ import annotations

from dataclasses import replace

from clvflow.delivery.base import Send, SendAbortedError, Sender, SendResult
from clvflow.ledger.store import Ledger
from clvflow.pipeline.render import Rendered


def ready(sender: Sender | None, rendered: Rendered, dry_run: bool = False) -> Send | None:
    """The sender's preparation of the batch (request bodies, say): nothing leaves yet.
    None when there is nothing to send (a dry run, or every message failed to render)."""
    if dry_run or not rendered.messages:
        return None
    if sender is None:
        raise ValueError("a run that sends needs a sender")
    return sender.prepare(rendered.messages)


def mark(ledger: Ledger, rendered: Rendered, send: Send | None, run_id: str) -> Rendered:
    """Mark the batch ``sending``, storing the promo codes it carries in the same commit;
    only just before it goes. Returns the batch as marked: the messages another run took
    over (this run's lease ran out) are left out, theirs to send."""
    if send is None:
        return rendered
    ids = [m.message_id for m in rendered.messages]
    marked = set(ledger.mark_sending(ids, rendered.codes, run_id))
    if len(marked) == len(ids):
        return rendered
    return replace(rendered, messages=[m for m in rendered.messages if m.message_id in marked])


def hand_over(
    ledger: Ledger, rendered: Rendered, send: Send | None, dry_run: bool = False
) -> list[SendResult]:
    """Send a batch that :func:`mark` has marked: one result per message that left or
    failed (a dry run: each as sent, nothing leaves). If the backend refuses the run
    (:class:`SendAbortedError`), the messages it never touched go back to ``claimed``."""
    if dry_run:
        return [SendResult(m.message_id, "sent") for m in rendered.messages]
    if send is None:
        return []
    try:
        return send()
    except SendAbortedError as stop:
        done = {r.message_id for r in stop.results}
        ledger.revert_sending([m.message_id for m in rendered.messages if m.message_id not in done])
        raise
