"""``POST /webhooks/orders``: the shop's order-created webhook becomes a Prefect
``shop.order.placed`` event, which the thank-you deployment's trigger turns into a flow run.

The body is JSON ``{"order": {...}, "customer": {...}}`` (see
:class:`clvflow.campaigns.triggered.OrderPlaced`; unknown keys are rejected). It must be
signed: ``X-Clvflow-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the shared
secret in ``CLVFLOW_ORDER_WEBHOOK_SECRET``. A repeated delivery emits a second event; the
ledger makes sure the order still gets one email.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from clvflow.campaigns.triggered import OrderPlaced

SECRET_ENV = "CLVFLOW_ORDER_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Clvflow-Signature"
MAX_BODY = 1_000_000

router = APIRouter()
Emitter = Callable[[OrderPlaced], str]


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header.strip())


def emit_with_prefect(placed: OrderPlaced) -> str:
    from clvflow.orchestration.events import order_placed

    return order_placed(placed, wait=False)


def _reject(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


@router.post("/webhooks/orders")
async def receive_order(request: Request) -> JSONResponse:
    secret: str | None = request.app.state.order_webhook_secret
    if not secret:
        return _reject(503, f"{SECRET_ENV} is not set")
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        return _reject(401, f"missing {SIGNATURE_HEADER} header")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _reject(413, "body too large")
    if not signature_ok(secret, body, header):
        return _reject(401, "signature does not match")
    try:
        raw = json.loads(body)
        placed = OrderPlaced.model_validate(raw)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            problems = [
                {"at": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            return _reject(422, "the order does not match the expected shape", problems=problems)
        return _reject(400, "body is not JSON")
    emit: Emitter = request.app.state.order_emitter
    event_id = await run_in_threadpool(emit, placed)
    return JSONResponse(
        {"event": "shop.order.placed", "event_id": event_id, "order_id": placed.order.order_id},
        status_code=202,
    )
