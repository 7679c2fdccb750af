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

_READ = 65536  # bytes a read asks for


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


class ReplyReader:
    """One reply, fed as its bytes arrive (the sender's event loop reads many sockets at
    once); :func:`read_reply` drives it from one blocking socket."""

    __slots__ = ("_collected",)

    def __init__(self) -> None:
        self._collected = _Collector()

    def feed(self, data: bytes) -> Reply | None:
        """The reply once ``data`` completes it, else None; :class:`ReplyError` if malformed."""
        collected = self._collected
        try:
            collected.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ReplyError(f"malformed reply: {exc}") from None
        return self._reply() if collected.complete else None

    def at_close(self) -> Reply:
        """The connection closed: the reply, if it is one that ends there (no length, not
        chunked); any other reply cut short raises :class:`ReplyError`."""
        if not _ends_at_close(self._collected):
            raise ReplyError("the connection closed before the reply was complete")
        return self._reply(keep_alive=False)

    def _reply(self, keep_alive: bool | None = None) -> Reply:
        collected = self._collected
        return Reply(
            collected.parser.get_status_code(),
            collected.headers,
            b"".join(collected.body),
            collected.keep_alive if keep_alive is None else keep_alive,
        )


def read_reply(sock: socket.socket) -> Reply:
    """The next reply on ``sock`` (its timeout applies to each read).

    A reply whose body runs to the end of the connection (no length, not chunked) ends when
    the server closes it; any other reply cut short raises :class:`ReplyError`."""
    reader = ReplyReader()
    try:
        while True:
            data = sock.recv(_READ)
            if not data:
                return reader.at_close()
            reply = reader.feed(data)
            if reply is not None:
                return reply
    except OSError as exc:  # a timeout or a reset
        raise ReplyError(f"{type(exc).__name__}: {exc}") from None


def _ends_at_close(collected: _Collector) -> bool:
    headers = collected.headers
    return (
        collected.headers_done
        and "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    )
