"""The sender's reply reader on real sockets: every way a server may frame a reply, cut one
short, or say it closes the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from clvflow.delivery.reply import ReplyError, read_reply

ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nServer: x\r\nX-Message-Id: abc123\r\n"
    b"Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    client.settimeout(2)
    yield client, server
    client.close()
    server.close()


def _serve(server: socket.socket, pieces: list[bytes], close: bool = False) -> None:
    def run() -> None:
        for piece in pieces:
            server.sendall(piece)
        if close:
            server.shutdown(socket.SHUT_WR)

    threading.Thread(target=run, daemon=True).start()


def test_a_202_gives_status_headers_and_keep_alive(pair: tuple[socket.socket, ...]) -> None:
    client, server = pair
    _serve(server, [ACCEPTED])
    reply = read_reply(client)
    assert (reply.status, reply.body, reply.keep_alive) == (202, b"", True)
    assert reply.headers["x-message-id"] == "abc123"


def test_a_reply_in_one_byte_pieces_reads_the_same(pair: tuple[socket.socket, ...]) -> None:
    client, server = pair
    body = b'{"errors":[{"message":"The subject is required","field":"subject"}]}'
    raw = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    _serve(server, [raw[i : i + 1] for i in range(len(raw))])
    reply = read_reply(client)
    assert (reply.status, reply.body) == (400, body)


def test_two_replies_on_one_connection_are_read_one_at_a_time(
    pair: tuple[socket.socket, ...],
) -> None:
    client, server = pair
    first = ACCEPTED.replace(b"abc123", b"one")
    second = ACCEPTED.replace(b"abc123", b"two")
    _serve(server, [first])
    assert read_reply(client).headers["x-message-id"] == "one"
    _serve(server, [second])
    assert read_reply(client).headers["x-message-id"] == "two"


def test_chunked_bodies_and_repeated_headers(pair: tuple[socket.socket, ...]) -> None:
    client, server = pair
    raw = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n"
        b"Warning: a\r\nwarning: b\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    _serve(server, [raw])
    reply = read_reply(client)
    assert (reply.status, reply.body, reply.headers["warning"]) == (503, b"hello world", "a, b")


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n", b"HTTP/1.0 202 Accepted\r\n"],
)
def test_a_server_that_closes_after_the_reply_says_so(
    pair: tuple[socket.socket, ...], head: bytes
) -> None:
    client, server = pair
    _serve(server, [head + b"Content-Length: 2\r\n\r\nok"])
    reply = read_reply(client)
    assert (reply.status, reply.body, reply.keep_alive) == (202, b"ok", False)


def test_a_body_that_runs_to_the_close_ends_there(pair: tuple[socket.socket, ...]) -> None:
    client, server = pair
    _serve(server, [b"HTTP/1.1 500 Internal Server Error\r\n\r\n", b"oops"], close=True)
    reply = read_reply(client)
    assert (reply.status, reply.body, reply.keep_alive) == (500, b"oops", False)


@pytest.mark.parametrize(
    "pieces",
    [
        [],  # closed without a word
        [b"HTTP/1.1 202 Acc"],  # inside the status line
        [b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nabc"],  # inside the body
    ],
)
def test_a_reply_cut_short_is_an_error(
    pair: tuple[socket.socket, ...], pieces: list[bytes]
) -> None:
    client, server = pair
    _serve(server, pieces, close=True)
    with pytest.raises(ReplyError, match="closed before the reply was complete"):
        read_reply(client)


def test_a_malformed_reply_is_an_error(pair: tuple[socket.socket, ...]) -> None:
    client, server = pair
    _serve(server, [b"SMTP/1.1 hello\r\n\r\n"])
    with pytest.raises(ReplyError, match="malformed"):
        read_reply(client)


def test_a_server_that_never_answers_times_out(pair: tuple[socket.socket, ...]) -> None:
    client, _server = pair
    client.settimeout(0.2)
    with pytest.raises(ReplyError, match=r"timed out|TimeoutError"):
        read_reply(client)
