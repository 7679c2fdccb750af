"""Send batches while the next one renders.

Rendering holds the GIL; a sender that waits off it (``waits_off_the_gil``: the SendGrid
sender in its own process, :mod:`clvflow.delivery.process`) leaves this process free to
render batch k + 1 while batch k is on the wire. Two delivery lanes: while one records
batch k's outcomes, the other has already marked batch k + 1 ``sending`` and handed it
over, so the sending process never waits for the ledger. The ledger order per batch is
unchanged: claimed → (rendered) → marked ``sending`` → handed over → outcomes recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from clvflow.campaigns.summary import BatchResult
from clvflow.ledger.store import Claim

if TYPE_CHECKING:
    from clvflow.campaigns.runner import CampaignRun, PreparedBatch

LANES = 2  # batches being delivered at once (one on the wire, one recording or queued)

Prepare = Callable[[Sequence[Claim], int, int], "PreparedBatch"]


def send_overlapped(
    run: CampaignRun,
    batches: Sequence[Sequence[Claim]],
    progress: Callable[[int, int], None] | None,
    prepare: Prepare | None = None,
) -> None:
    """Every batch: render here (``prepare(batch, index, total)``, by default
    ``run.prepare_batch``), deliver (mark sending, send, record) in a delivery lane.
    Progress is reported in batch order."""
    total = len(batches)
    render: Prepare = prepare or (lambda batch, index, total: run.prepare_batch(batch))
    finished = 0

    def settle(future: Future[BatchResult]) -> None:
        nonlocal finished
        future.result()
        finished += 1
        if progress is not None:
            progress(finished, total)

    with ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="deliver") as lanes:
        in_flight: deque[Future[BatchResult]] = deque()
        try:
            for index, batch in enumerate(batches, start=1):
                prepared = render(batch, index, total)
                while len(in_flight) >= LANES:
                    settle(in_flight.popleft())
                in_flight.append(lanes.submit(run.deliver_batch, prepared))
            while in_flight:
                settle(in_flight.popleft())
        finally:
            wait(in_flight)  # the caller releases unsent rows: never while one is out
