"""A batch retried after its first attempt died mid-send (the task's retry): nothing the
first attempt handed to the sender goes out again — the whole batch was handed over, so
every message of it is reported as unknown, never re-sent; a later batch goes out once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import campaign_job, segment_members
from clvflow.delivery.base import SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.outbox import OutboxSender
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.render import planned_rows
from clvflow.pipeline.workspace import open_workspace
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ProjectFactory
from tests.test_campaign_run import FILES


class CrashingOnce:
    """The real outbox, with a fault: the first batch dies after two messages left."""

    name = "outbox"

    def __init__(self, outbox: OutboxSender) -> None:
        self.outbox = outbox
        self.calls = 0
        self.delivered: Counter[str] = Counter()

    def prepare(self, batch: Sequence[OutgoingMessage]) -> Callable[[], list[SendResult]]:
        return partial(self.send_batch, batch)

    def send_batch(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls += 1
        if self.calls == 1:
            self.outbox.send_batch(batch[:2])
            self.delivered.update(m.customer_id for m in batch[:2])
            raise ConnectionError("the process lost its connection mid-batch")
        self.delivered.update(m.customer_id for m in batch)
        return self.outbox.send_batch(batch)

    def close(self) -> None:
        self.outbox.close()


def test_a_retried_batch_never_resends(make_project: ProjectFactory) -> None:
    project = Project.load(make_project(FILES))
    campaign = load_campaigns(project.prefect_file)["everyone"]
    sender = CrashingOnce(OutboxSender(project.outbox_dir))
    job = campaign_job(project, campaign, AS_OF)
    with open_workspace(project, AS_OF) as ws:
        planned = pipeline.plan(ws, job, segment_members(ws, "everyone", AS_OF))
        claims = pipeline.claim_plan(ws, job, planned)
        assert [c.customer_id for c in claims] == ["C1", "C2", "C4", "C5"]
        first, second = claims[:3], claims[3:]
        rows = planned_rows(planned.send)
        with pytest.raises(ConnectionError):
            pipeline.send_batch(ws, job, first, sender, rows)
        retried = pipeline.send_batch(ws, job, first, sender, rows)  # the task's retry
        later = pipeline.send_batch(ws, job, second, sender, rows)
    # C1 and C2 left in the failed attempt, C4 was handed over and maybe not; none twice
    assert sender.delivered == Counter({"C1": 1, "C2": 1, "C5": 1})
    assert (retried.sent, retried.unknown, retried.failed) == (0, 3, 0)
    assert (later.sent, later.unknown) == (1, 0)
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            rows = dict(con.execute(select(messages.c.customer_id, messages.c.status)).all())
    finally:
        ledger.close()
    assert rows == {"C1": "unknown", "C2": "unknown", "C4": "unknown", "C5": "sent"}
