"""The SendGrid sender in its own process: same results as in-process, refusals carried
back, bad settings reported at open, staged batches leaving only when sent (in the order
asked), and no sending on after its parent is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clvflow.delivery.base import SendAbortedError
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.process import SenderProcess, SendGridSettings
from clvflow.delivery.standin import FaultConfig, SendGridStandIn
from clvflow.errors import DeliveryError

KEY = "SG.process-test"


def settings(url: str, key: str = KEY) -> SendGridSettings:
    return SendGridSettings(api_key=key, api_host=url, timeout=10, sandbox=False, concurrency=4)


def message(mid: int, subject: str = "Hello") -> OutgoingMessage:
    return OutgoingMessage(
        message_id=mid, campaign="c", occurrence="once", customer_id=f"C{mid}",
        to_email=f"c{mid}@example.com", to_name="", from_email="shop@example.com",
        from_name="Shop", subject=subject, html="<p>x</p>", text="x",
    )  # fmt: skip


def test_a_batch_sent_from_the_child_process_gets_one_result_per_message() -> None:
    with SendGridStandIn(KEY) as sg:
        sender = SenderProcess(settings(sg.url))
        try:
            results = sender.send_batch([message(1), message(2, subject=""), message(3)])
            again = sender.send_batch([message(4)])
        finally:
            sender.close()
        by_id = {r.message_id: r for r in results + again}
        assert {i: r.status for i, r in by_id.items()} == {
            1: "sent",
            2: "failed",
            3: "sent",
            4: "sent",
        }
        assert (by_id[2].reason or "").startswith("400")
        accepted = {m.message_id for m in sg.accepted()}
        assert {by_id[i].provider_id for i in (1, 3, 4)} == accepted
        assert sorted(sg.deliveries_per_recipient()) == [
            "c1@example.com", "c3@example.com", "c4@example.com"
        ]  # fmt: skip


def test_a_refusal_comes_back_as_send_aborted_and_later_batches_are_refused_at_once() -> None:
    with SendGridStandIn(KEY) as sg:
        sender = SenderProcess(settings(sg.url, key="SG.wrong"))
        try:
            with pytest.raises(SendAbortedError, match="401") as first:
                sender.send_batch([message(i) for i in range(1, 6)])
            assert first.value.results == []
            requests = sum(sg.status_counts().values())
            with pytest.raises(SendAbortedError, match="401"):
                sender.send_batch([message(6)])
            assert sum(sg.status_counts().values()) == requests
        finally:
            sender.close()
        assert sg.accepted() == []


def test_a_staged_batch_leaves_only_when_it_is_sent_and_a_dropped_one_never() -> None:
    with SendGridStandIn(KEY) as sg:
        sender = SenderProcess(settings(sg.url))
        try:
            first = sender.stage([message(1), message(2)])
            dropped = sender.stage([message(3)])
            later = sender.stage([message(4), message(5, subject="")])
            time.sleep(0.3)  # time to prepare all three: still nothing leaves
            assert sg.accepted() == []
            results = sender.send_batch([message(4), message(5, subject="")], staged=later)
            assert [(r.message_id, r.status) for r in results] == [(4, "sent"), (5, "failed")]
            sender.drop(dropped)
            again = sender.send_batch([message(1), message(2)], staged=first)
            assert {r.message_id for r in again} == {1, 2}
            plain = sender.send_batch([message(6)])  # not staged: as it comes
        finally:
            sender.close()
        assert [r.status for r in plain] == ["sent"]
        assert sorted(sg.deliveries_per_recipient()) == [
            "c1@example.com", "c2@example.com", "c4@example.com", "c6@example.com"
        ]  # fmt: skip


def test_bad_settings_fail_when_the_sender_opens() -> None:
    with pytest.raises(DeliveryError, match="api_host"):
        SenderProcess(settings("not-a-url"))


CHILD = """
import sys, time
from clvflow.delivery.process import SenderProcess, SendGridSettings
sender = SenderProcess(SendGridSettings("SG.x", sys.argv[1], 10, False, 2))
print(sender._process.pid, flush=True)
time.sleep(60)
"""


def test_the_sending_process_stops_when_its_parent_is_killed() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig()) as sg:
        parent = subprocess.Popen(
            [sys.executable, "-c", CHILD, sg.url], stdout=subprocess.PIPE, text=True
        )
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        parent.stdout.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the sending process outlived its parent")


def test_the_key_is_not_in_the_settings_repr() -> None:
    assert KEY not in repr(settings("http://127.0.0.1:9"))
