"""Batches delivered in two lanes while the next renders: every message once, a batch
marked ``sending`` only once it is handed over, progress in order, and an abort that leaves
nothing half-done. (The SendGrid backend's own runs through this path, with faults and a
killed sending process, are in test_sendgrid_delivery.py.)"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.runner import run_campaign
from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.outbox import OutboxSender
from clvflow.errors import DeliveryError
from clvflow.heap import BULK_THRESHOLDS
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from tests.conftest import AS_OF, BASE_CONFIG, ProjectFactory
from tests.test_campaign_run import FILES

BATCH = 1


class WatchedOutbox:
    """The outbox, told it may be fed from a lane (as the SendGrid process is), checking
    the ledger each time a batch arrives."""

    name = "outbox"
    waits_off_the_gil = True

    def __init__(self, project: Project, refuse_batch: int | None = None) -> None:
        self.outbox = OutboxSender(project.outbox_dir)
        self.ledger = Ledger(project.ledger_url)
        self.refuse_batch = refuse_batch
        self.batches: list[list[int]] = []
        self.sending_seen: list[int] = []
        self.collector: list[tuple[tuple[int, int, int], int]] = []
        self.lock = threading.Lock()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        with self.lock:
            self.batches.append([m.message_id for m in messages])
            number = len(self.batches)
        counts = self.ledger.status_counts()
        self.sending_seen.append(counts.get("sending", 0))
        self.collector.append((gc.get_threshold(), gc.get_freeze_count()))
        if self.refuse_batch is not None and number >= self.refuse_batch:
            # as the SendGrid sender: once refused, every later batch is refused at once
            raise SendAbortedError("SendGrid refused the request: 401", [])
        time.sleep(0.02)  # on the wire for a while: the other lane gets to record
        return self.outbox.send_batch(messages)

    def close(self) -> None:
        self.outbox.close()
        self.ledger.close()


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    config = BASE_CONFIG + f"limits:\n  batch_size: {BATCH}\n"
    return Project.load(make_project(FILES, config=config))


def _sent_ids(project: Project) -> list[str]:
    return sorted(p.name for p in Path(project.outbox_dir).rglob("*.eml"))


def test_two_lanes_send_every_message_once_one_batch_sending_at_a_time(
    project: Project,
) -> None:
    sender = WatchedOutbox(project)
    progress: list[tuple[int, int]] = []
    campaign = load_campaigns(project.prefect_file)["everyone"]
    summary = run_campaign(
        project, campaign, as_of=AS_OF, sender=sender, progress=lambda d, t: progress.append((d, t))
    )
    sender.close()
    handed = [i for batch in sender.batches for i in batch]
    assert summary.sent == len(handed) == len(set(handed)) == len(_sent_ids(project)) > 2 * BATCH
    assert all(len(batch) <= BATCH for batch in sender.batches)
    # `sending`: the batch just handed over, and the one before it until its outcomes are
    # recorded; never a batch still waiting for the sender
    sizes = [0] + [len(batch) for batch in sender.batches]
    for number, seen in enumerate(sender.sending_seen, start=1):
        assert sizes[number] <= seen <= sizes[number] + sizes[number - 1]
    total = len(sender.batches)
    assert progress == [(n, total) for n in range(1, total + 1)]
    assert Ledger(project.ledger_url).status_counts("everyone") == {"sent": summary.sent}


def test_an_abort_in_one_lane_releases_what_never_left(project: Project) -> None:
    sender = WatchedOutbox(project, refuse_batch=2)
    campaign = load_campaigns(project.prefect_file)["everyone"]
    with pytest.raises(DeliveryError, match="401"):
        run_campaign(project, campaign, as_of=AS_OF, sender=sender)
    sender.close()
    first = sender.batches[0]
    counts = Ledger(project.ledger_url).status_counts("everyone")
    # the first batch went out; nothing is left `sending` or `claimed` to be lost: the
    # refused batch and every later one are released and planned again by the next run
    assert counts == {"sent": len(first)}
    assert len(_sent_ids(project)) == len(first)
    again = run_campaign(project, campaign, as_of=AS_OF, sender=OutboxSender(project.outbox_dir))
    assert again.sent > 0 and len(_sent_ids(project)) == len(first) + again.sent


def test_a_run_collects_garbage_in_bulk_and_gives_the_settings_back(project: Project) -> None:
    before = gc.get_threshold()
    assert before != BULK_THRESHOLDS and gc.get_freeze_count() == 0
    sender = WatchedOutbox(project)
    run_campaign(
        project, load_campaigns(project.prefect_file)["everyone"], as_of=AS_OF, sender=sender
    )
    sender.close()
    # while sending: the bulk thresholds, and the run's rows out of the collector's sight
    assert sender.collector and all(
        threshold == BULK_THRESHOLDS and frozen > 0 for threshold, frozen in sender.collector
    )
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
