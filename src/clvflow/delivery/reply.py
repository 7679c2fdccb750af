"""Read one HTTP/1.1 reply from a kept-alive socket, parsed by ``httptools`` (llhttp).

``http.client.HTTPResponse`` parses the status line and headers with the ``email`` package:
with it a request cost the sending process 108 µs of CPU, with this reader 70 µs, the bare
socket calls 41-47 µs (bench/README.md, "send"). llhttp, the parser Node.js uses, does the same in
a few microseconds and handles what a server may send: chunked bodies, a reply in many
pieces, headers split across reads.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httptools

_READ = 65536


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes
    keep_alive: bool = True  # False: the server closes the connection after this reply


class ReplyError(Exception):
    """No complete reply: the connection closed, timed out or sent something malformed."""


class _Collector:
    """httptools' callbacks: what one reply holds."""

    __slots__ = ("body", "complete", "headers", "headers_done", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        known = self.headers.get(key)
        self.headers[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # asked now: once the reply is complete the parser starts afresh on the next one
        self.keep_alive = self.parser.should_keep_alive()


def read_reply(sock: socket.socket) -> Reply:
    """The next reply on ``sock`` (its timeout applies to each read).

    A reply whose body runs to the end of the connection (no length, not chunked) ends when
    the server closes it; any other reply cut short raises :class:`ReplyError`."""
    collected = _Collector()
    parser = collected.parser
    try:
        while not collected.complete:
            data = sock.recv(_READ)
            if not data:
                if _ends_at_close(collected):
                    break
                raise ReplyError("the connection closed before the reply was complete")
            parser.feed_data(data)
        status = parser.get_status_code()
        keep_alive = collected.keep_alive
    except OSError as exc:  # a timeout or a reset
        raise ReplyError(f"{type(exc).__name__}: {exc}") from None
    except httptools.HttpParserError as exc:
        raise ReplyError(f"malformed reply: {exc}") from None
    return Reply(status, collected.headers, b"".join(collected.body), keep_alive)


def _ends_at_close(collected: _Collector) -> bool:
    headers = collected.headers
    return (
        collected.headers_done
        and "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    )
