"""Send one batch while the next one renders.

Rendering holds the GIL; a sender that waits off it (``waits_off_the_gil``: the SendGrid
sender in its own process, :mod:`clvflow.delivery.process`) leaves this process free to
render batch k + 1 while batch k is on the wire. The ledger order per batch is unchanged:
claimed → (rendered) → marked ``sending`` → handed over → outcomes recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from clvflow.campaigns.summary import BatchResult
from clvflow.ledger.store import Claim

if TYPE_CHECKING:
    from clvflow.campaigns.runner import CampaignRun


def send_overlapped(
    run: CampaignRun,
    batches: Sequence[Sequence[Claim]],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Every batch: render here, deliver (mark sending, send, record) in a second thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver") as lane:
        in_flight: Future[BatchResult] | None = None
        try:
            for index, batch in enumerate(batches, start=1):
                prepared = run.prepare_batch(batch)
                if in_flight is not None:
                    in_flight.result()
                    if progress is not None:
                        progress(index - 1, len(batches))
                in_flight = lane.submit(run.deliver_batch, prepared)
            if in_flight is not None:
                in_flight.result()
                if progress is not None:
                    progress(len(batches), len(batches))
        finally:
            if in_flight is not None:
                wait([in_flight])  # the caller releases unsent rows: never while one is out
