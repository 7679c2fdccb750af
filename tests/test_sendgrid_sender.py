"""The SendGrid sender against the stand-in: how long it waits on 429 and 5xx, what it does
with a kept-alive connection the server closed, and a key it must not put in a header."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fakes.sendgrid_standin import FaultConfig, SendGridStandIn

from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.sendgrid import RetryPolicy, SendGridSender
from clvflow.errors import DeliveryError

KEY = "SG.sender-test"
NOW = 1_800_000_000.0


def message(mid: int) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=mid, campaign="c", occurrence="once", customer_id=f"C{mid}",
        to_email=f"c{mid}@example.com", to_name="", from_email="shop@example.com",
        from_name="Shop", subject="Hello", html="<p>x</p>", text="x",
    )  # fmt: skip


@pytest.fixture
def frozen_standin() -> Iterator[SendGridStandIn]:
    """A stand-in whose clock is frozen at NOW (its X-RateLimit-Reset is NOW + 5)."""
    faults = FaultConfig(rate_429=1.0, rate_limit_reset_s=5.0)
    with SendGridStandIn(KEY, faults=faults, clock=lambda: NOW) as sg:
        yield sg


def test_a_429_waits_until_the_rate_limit_resets_plus_jitter(
    frozen_standin: SendGridStandIn,
) -> None:
    waits: list[float] = []
    retry = RetryPolicy(attempts=4, base_seconds=0.25)
    sender = SendGridSender(
        KEY, frozen_standin.url, retry=retry, concurrency=1, sleep=waits.append, clock=lambda: NOW
    )
    [result] = sender.send_batch([message(1)])
    sender.close()
    assert result.status == "failed"
    assert result.reason is not None and result.reason.startswith("gave up after 4 attempts")
    assert "429" in result.reason
    assert len(waits) == 3  # between the four tries; none after the last one
    # reset (NOW + 5) − now, plus < base jitter, less the moments between reply and wait
    assert all(4.99 <= w < 5.25 for w in waits)
    assert frozen_standin.accepted() == []
    assert frozen_standin.status_counts()[429] == 4


def test_5xx_backs_off_exponentially_with_full_jitter_then_succeeds() -> None:
    waits: list[float] = []
    retry = RetryPolicy(attempts=6, base_seconds=0.5, cap_seconds=1.5)
    with SendGridStandIn(KEY, faults=FaultConfig(rate_503=1.0)) as sg:

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 4:
                sg.set_faults(FaultConfig())  # the outage ends after the fourth try

        sender = SendGridSender(KEY, sg.url, retry=retry, concurrency=1, sleep=sleep)
        [result] = sender.send_batch([message(1)])
        sender.close()
        assert result.status == "sent" and result.provider_id
        assert len(sg.accepted()) == 1
        assert sg.status_counts()[503] == 4
    # attempt n waits uniformly in [0, min(cap, base * 2**n)]: ceilings 0.5, 1.0, 1.5, 1.5
    for wait, ceiling in zip(waits, (0.5, 1.0, 1.5, 1.5), strict=True):
        assert 0.0 <= wait <= ceiling


def test_a_connection_closed_by_the_server_while_idle_is_replaced_not_lost() -> None:
    with SendGridStandIn(KEY, idle_timeout_s=0.2) as sg:
        sender = SendGridSender(KEY, sg.url, concurrency=1)
        first = sender.send_batch([message(1)])
        time.sleep(0.6)  # the stand-in closes the idle kept-alive connection
        second = sender.send_batch([message(2)])
        sender.close()
        assert [r.status for r in first + second] == ["sent", "sent"]
        assert sorted(sg.deliveries_per_recipient()) == ["c1@example.com", "c2@example.com"]


@pytest.mark.parametrize("key", ["SG.abc\r\nX-Evil: 1", "SG.abc\ndef"])
def test_a_key_with_a_line_break_is_refused_before_anything_is_sent(key: str) -> None:
    with SendGridStandIn(KEY) as sg:
        with pytest.raises(DeliveryError, match="line break"):
            SendGridSender(key, sg.url)
        assert sg.status_counts() == {}


def test_an_api_host_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(DeliveryError, match="api_host"):
        SendGridSender(KEY, "api.sendgrid.com")


def test_once_refused_every_later_batch_is_refused_at_once_and_sends_nothing() -> None:
    from clvflow.delivery.base import SendAbortedError

    with SendGridStandIn(KEY) as sg:
        sender = SendGridSender("SG.wrong", sg.url, concurrency=2)
        with pytest.raises(SendAbortedError, match="401") as first:
            sender.send_batch([message(i) for i in range(1, 9)])
        assert first.value.results == []  # nothing was accepted
        requests = sum(sg.status_counts().values())
        assert 1 <= requests <= 8
        # a retry of the batch, or the next batch: refused without a request
        with pytest.raises(SendAbortedError, match="401") as again:
            sender.send_batch([message(9)])
        assert again.value.results == []
        assert sum(sg.status_counts().values()) == requests
        sender.close()
        assert sg.accepted() == []
