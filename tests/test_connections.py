"""Requests over a few kept-alive connections from one thread (delivery/connections.py),
against the stand-in: every request ends in exactly one outcome, a reply that never comes
is an error (the request may have been delivered), a request that cannot be written is
"not sent", and a line that failed is replaced."""

from __future__ import annotations

import socket

import orjson
import pytest

from clvflow.delivery.connections import Connections, Done, Host, NotSentError
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import build_payload
from clvflow.delivery.standin import FaultConfig, SendGridStandIn

KEY = "SG.connections-test"
PATH = "/v3/mail/send"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def body(n: int) -> bytes:
    message = OutgoingMessage(
        message_id=n, campaign="c", occurrence="once", customer_id=f"C{n}",
        to_email=f"c{n}@example.com", to_name="", from_email="shop@example.com",
        from_name="Shop", subject="Hello", html="<p>x</p>", text="x",
    )  # fmt: skip
    return orjson.dumps(build_payload(message, sandbox=False))


def run_all(connections: Connections, count: int, first: int = 0) -> list[Done]:
    """Start ``count`` requests (recipients ``first``, ``first + 1``, ...) as connections
    free up; every outcome."""
    waiting = list(range(first, first + count))
    outcomes: list[Done] = []
    while waiting or connections.busy:
        while waiting and connections.free:
            n = waiting.pop(0)
            connections.start(n, PATH, body(n), HEADERS)
        outcomes.extend(connections.wait(None))
    return outcomes


def test_every_request_gets_its_reply_over_three_connections() -> None:
    with SendGridStandIn(KEY) as sg:
        connections = Connections(Host(sg.url, timeout=5), size=3)
        for n in range(3):
            connections.start(n, PATH, body(n), HEADERS)
        assert (connections.free, connections.busy) == (0, 3)
        outcomes = connections.wait(None)
        while connections.busy:
            outcomes.extend(connections.wait(None))
        outcomes += run_all(connections, 9, first=3)
        connections.close()
    assert len(outcomes) == 12
    assert all(d.reply is not None and d.reply.status == 202 for d in outcomes)
    assert sorted(d.tag for d in outcomes) == list(range(12))
    assert all(d.reply and d.reply.headers["x-message-id"] for d in outcomes)
    assert sorted(sg.deliveries_per_recipient().values()) == [1] * 12


def test_a_reply_that_never_comes_is_an_error_and_the_line_is_replaced() -> None:
    slow = FaultConfig(rate_slow=1.0, slow_delay_s=1.0)
    with SendGridStandIn(KEY, faults=slow) as sg:
        connections = Connections(Host(sg.url, timeout=0.2), size=1)
        [late] = run_all(connections, 1)
        assert late.reply is None and late.error is not None and "timed out" in late.error
        assert connections.free == 1 and connections.busy == 0
        sg.set_faults(FaultConfig())
        [next_one] = run_all(connections, 1)
        connections.close()
    assert next_one.reply is not None and next_one.reply.status == 202


def test_a_connection_dropped_after_the_request_was_written_is_maybe_sent() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_accept_drop=1.0)) as sg:
        connections = Connections(Host(sg.url, timeout=5), size=2)
        outcomes = run_all(connections, 2)
        connections.close()
        accepted = len(sg.accepted())
    assert all(d.reply is None and d.error for d in outcomes)
    assert accepted == 2  # it had been delivered: hence "maybe sent", never "not sent"


def test_nothing_listening_is_not_sent_and_the_line_stays_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens
    connections = Connections(Host(f"http://127.0.0.1:{port}", timeout=1), size=2)
    with pytest.raises(NotSentError, match="cannot connect"):
        connections.start(1, PATH, body(1), HEADERS)
    assert (connections.free, connections.busy) == (2, 0)
    connections.close()


def test_a_request_larger_than_the_socket_buffer_is_written_whole() -> None:
    # A body the socket cannot take at once (a small send buffer, a slow reader): the part
    # the non-blocking write did not take follows with the timeout, in order, nothing lost.
    with SendGridStandIn(KEY, keep_content=True) as sg:
        connections = Connections(Host(sg.url, timeout=10), 1)
        html = "<p>" + "ő" * 400_000 + "</p>"  # about 800 kB of UTF-8
        message = OutgoingMessage(
            message_id=1, campaign="c", occurrence="once", customer_id="C1",
            to_email="c1@example.com", to_name="", from_email="shop@example.com",
            from_name="Shop", subject="Hello", html=html, text="x",
        )  # fmt: skip
        connections.start(1, PATH, b"", HEADERS)  # opens the line
        first = run_until_done(connections)
        line_sock = next(line.sock for line in connections._lines if line.sock is not None)
        line_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        connections.start(2, PATH, orjson.dumps(build_payload(message, sandbox=False)), HEADERS)
        second = run_until_done(connections)
        connections.close()
        assert first.reply is not None and first.reply.status == 400  # an empty body
        assert second.reply is not None and second.reply.status == 202
        accepted = sg.accepted()
        assert len(accepted) == 1
        assert accepted[0].body["content"][1]["value"] == html


def run_until_done(connections: Connections) -> Done:
    while True:
        done = connections.wait(5.0)
        if done:
            (outcome,) = done
            return outcome
