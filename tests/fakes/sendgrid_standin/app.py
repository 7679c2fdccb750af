"""The stand-in's ASGI application: SendGrid's mail-send and suppression endpoints.

The state (keys, faults, records, suppressions) lives in
:class:`~.standin.SendGridStandIn`; this module turns requests into replies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import orjson

from .faults import FaultConfig, Outcome
from .rules import SendGridError, validate_mail_send

if TYPE_CHECKING:
    from .standin import SendGridStandIn

__all__ = ["LIST_KINDS", "MAX_BODY_BYTES", "MAX_SUPPRESSION_PAGE", "StandInApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("fakes.sendgrid_standin")

MAX_BODY_BYTES: Final = 30 * 1024 * 1024
"""Bodies of this size or more get 413 (SendGrid: "the whole message must be under 30 MB")."""
MAX_SUPPRESSION_PAGE: Final = 500
LIST_KINDS: Final[tuple[str, ...]] = ("unsubscribes", "bounces", "spam_reports")

_UNAUTHORIZED: Final = "The provided authorization grant is invalid, expired, or revoked"
_FORBIDDEN: Final = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until "
    "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
    "sender-identity/ to see the Sender Identity requirements"
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a request gets: a status, a body and headers, after ``delay`` seconds; or, with
    ``drop``, the connection closed without a reply."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False


_DROP: Final = Reply(0, drop=True)


class _Answer(Exception):  # noqa: N818 - carries a reply, not an error
    """Raised while handling a request to answer it with ``reply`` at once."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


class _ClientGone(Exception):  # noqa: N818 - control flow, not an error
    """The client disconnected before its request was read."""


def error_reply(
    status: int,
    message: str | None = None,
    field: str | None = None,
    *,
    errors: Sequence[SendGridError] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """A reply in SendGrid's error format ``{"errors": [{"message", "field", "help"}]}``."""
    items = list(errors) or [SendGridError(message or HTTPStatus(status).phrase, field)]
    body = orjson.dumps({"errors": [e.as_json() for e in items]})
    return Reply(status, body, (("content-type", "application/json"), *headers))


def _json_reply(payload: Any) -> Reply:
    return Reply(200, orjson.dumps(payload), (("content-type", "application/json"),))


class StandInApp:
    """The ASGI application serving one :class:`~.standin.SendGridStandIn`."""

    def __init__(self, standin: SendGridStandIn) -> None:
        self.sg = standin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/")
        try:
            reply = await self._route(method, path, scope, receive)
        except _Answer as answer:
            reply = answer.reply
        except _ClientGone:
            return
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            self.sg._count_drop()
            # An informational head announces no outcome: clients skip it, then meet the end
            # of the connection, as when nothing at all came back (uvicorn closes a
            # connection whose application returns without a final reply).
            await send({"type": "http.response.start", "status": 100, "headers": []})
            logger.debug('"%s %s" dropped', method, path)
            return
        headers = [(b"content-length", str(len(reply.body)).encode("ascii"))]
        headers.extend(
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers
        )
        self.sg._count_status(reply.status)  # before the client can see the reply
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        logger.debug('"%s %s" %d', method, path, reply.status)

    async def _route(self, method: str, path: str, scope: Scope, receive: Receive) -> Reply:
        if path == "/v3/mail/send":
            if method != "POST":
                return error_reply(405, f"Method {method} not allowed on {path}")
            return await self._mail_send(_headers(scope), receive)
        kind = _suppression_kind(path)
        if kind is None:
            return error_reply(404, f"No route for {method} {path}")
        if method != "GET":
            return error_reply(405, f"Method {method} not allowed on {path}")
        return self._suppressions(_headers(scope), kind, path, scope["query_string"])

    # -- mail send ----------------------------------------------------------------------------
    async def _mail_send(self, headers: dict[str, str], receive: Receive) -> Reply:
        sg = self.sg
        raw = await _read_body(receive, sg.max_body_bytes)
        if raw is None:
            return error_reply(
                413, f"The request body is too large; it must be under {sg.max_body_bytes} bytes."
            )
        key = self._authenticate(headers)
        faults, outcome, delay = sg._draw_fault()
        try:
            _raise_fault(faults, outcome, sg.clock())
            reply = self._accept(raw, headers, key, accept_drop=outcome == "accept_drop")
        except _Answer as answer:
            reply = answer.reply
        return dataclasses.replace(reply, delay=delay)

    def _accept(self, raw: bytes, headers: dict[str, str], key: str, *, accept_drop: bool) -> Reply:
        sg = self.sg
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return error_reply(415, "Content-Type should be application/json.")
        try:
            body = orjson.loads(raw)  # strict JSON: NaN, Infinity, lone surrogates are errors
        except orjson.JSONDecodeError as exc:
            return error_reply(400, f"Bad Request: the body is not valid JSON ({exc}).")
        errors = validate_mail_send(body, sg.clock())
        if errors:
            return error_reply(400, errors=errors)
        if sg._is_forbidden(key):
            return error_reply(403, _FORBIDDEN, "from")
        settings = body.get("mail_settings") or {}
        sandbox = (settings.get("sandbox_mode") or {}).get("enable") is True
        recorded_headers = {k: v for k, v in headers.items() if k != "authorization"}
        dropped = accept_drop and not sandbox
        message_id = sg._record(body, recorded_headers, key, sandbox=sandbox, dropped=dropped)
        if dropped:
            return _DROP
        return Reply(200 if sandbox else 202, b"", (("x-message-id", message_id),))

    def _authenticate(self, headers: dict[str, str]) -> str:
        header = headers.get("authorization")
        if not header:
            raise _Answer(error_reply(401, "authorization required"))
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not self.sg._known_key(key):
            raise _Answer(error_reply(401, _UNAUTHORIZED))
        return key

    # -- suppressions -------------------------------------------------------------------------
    def _suppressions(self, headers: dict[str, str], kind: str, path: str, query: bytes) -> Reply:
        sg = self.sg
        self._authenticate(headers)
        if not sg.faults.affect_suppressions:
            return self._suppression_list(kind, path, query)
        faults, outcome, delay = sg._draw_fault()
        try:
            if outcome == "accept_drop":
                raise _Answer(_DROP)  # nothing to accept on a read: a plain drop
            _raise_fault(faults, outcome, sg.clock())
            reply = self._suppression_list(kind, path, query)
        except _Answer as answer:
            reply = answer.reply
        return dataclasses.replace(reply, delay=delay)

    def _suppression_list(self, kind: str, path: str, query: bytes) -> Reply:
        sg = self.sg
        if kind == "asm_group":
            group = path.split("/")[4]
            if not group.isdigit():
                return error_reply(404, f"Unknown suppression group {group!r}")
            return _json_reply(sg._group_suppressions(int(group)))
        params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
        limit = _int_param(params, "limit", 1, MAX_SUPPRESSION_PAGE)
        offset = _int_param(params, "offset", 0, None)
        start = _int_param(params, "start_time", 0, None)
        end = _int_param(params, "end_time", 0, None)
        page = sg._suppression_page(
            kind, MAX_SUPPRESSION_PAGE if limit is None else limit, offset or 0, start, end
        )
        return _json_reply(page)


def _raise_fault(faults: FaultConfig, outcome: Outcome, now: float) -> None:
    """Answer with the drawn fault, if it is one decided before acceptance."""
    if outcome == "drop":
        raise _Answer(_DROP)
    if outcome == "429":
        reset = math.ceil(now + faults.rate_limit_reset_s)
        raise _Answer(
            error_reply(
                429,
                "too many requests",
                headers=(
                    ("x-ratelimit-limit", str(faults.rate_limit_limit)),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", str(reset)),
                ),
            )
        )
    if outcome == "500":
        raise _Answer(error_reply(500, "internal server error"))
    if outcome == "503":
        raise _Answer(error_reply(503, "service unavailable"))


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is ``limit`` bytes or more (read to its end
    all the same, so the connection stays usable)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size < limit:
            chunks.append(chunk)
        else:
            chunks.clear()
        if not message.get("more_body", False):
            return b"".join(chunks) if size < limit else None


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers, names lower-cased; repeated ones joined with ", "."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        out[name] = value if name not in out else f"{out[name]}, {value}"
    return out


def _suppression_kind(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) == 4 and parts[:3] == ["", "v3", "suppression"] and parts[3] in LIST_KINDS:
        return parts[3]
    if len(parts) == 6 and parts[:4] == ["", "v3", "asm", "groups"] and parts[5] == "suppressions":
        return "asm_group"
    return None


def _int_param(params: dict[str, list[str]], name: str, low: int, high: int | None) -> int | None:
    """An integer query parameter within [low, high], or None when absent; 400 otherwise."""
    values = params.get(name)
    if not values:
        return None
    try:
        value = int(values[-1])
    except ValueError:
        raise _Answer(error_reply(400, f"{name} must be an integer", name)) from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _Answer(error_reply(400, f"{name} must be {bound}", name))
    return value
