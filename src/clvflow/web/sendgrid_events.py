"""``POST /webhooks/sendgrid``: SendGrid's signed Event Webhook.

The signature (ECDSA P-256 over timestamp + raw body) is checked with the ``sendgrid``
package's ``EventWebhook`` against ``SENDGRID_WEBHOOK_PUBLIC_KEY`` (base64 DER, as SendGrid
shows it), and the timestamp must be recent, so a captured batch cannot be replayed later.
Events are stored once each (``sg_event_id``; deliveries repeat), mapped back to ledger
messages through the ``clvflow_*`` custom args; an event that does not map or does not parse
is still kept and counted, never crashing the batch. Bounces, spam reports and unsubscribes
become suppressions.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from clvflow.web.state import WebState

router = APIRouter()

SUPPRESS = {
    "spamreport": "spam_report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


def _reject(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def verify(public_key: str, body: str, signature: str, timestamp: str) -> bool:
    try:
        webhook = EventWebhook()
        key = webhook.convert_public_key_to_ecdsa(public_key)
        return bool(webhook.verify_signature(body, signature, timestamp, key))
    except (binascii.Error, ValueError, TypeError):
        return False


def event_row(raw: Any) -> dict[str, Any]:
    """One ledger row for one event; anything unexpected becomes a 'malformed' row."""
    detail = json.dumps(raw, sort_keys=True, default=str)
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        digest = hashlib.sha256(detail.encode()).hexdigest()
        return {"event_id": f"malformed:{digest}", "event": "malformed", "detail": detail}
    event_id = raw.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id:
        event_id = "nohash:" + hashlib.sha256(detail.encode()).hexdigest()
    try:
        message_id: int | None = int(raw["clvflow_message"])
    except (KeyError, TypeError, ValueError):
        message_id = None
    try:
        occurred = dt.datetime.fromtimestamp(int(raw["timestamp"]), dt.UTC).replace(tzinfo=None)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        occurred = None
    email = raw.get("email")
    return {
        "event_id": event_id[:200],
        "event": raw["event"][:50],
        "email": email.lower()[:320] if isinstance(email, str) else None,
        "message_id": message_id,
        "campaign": str(raw.get("clvflow_campaign"))[:200] if raw.get("clvflow_campaign") else None,
        "customer_id": str(raw.get("clvflow_customer"))[:200]
        if raw.get("clvflow_customer")
        else None,
        "occurred_at": occurred,
        "detail": detail,
    }


def suppression_reason(raw: dict[str, Any]) -> str | None:
    event = raw.get("event")
    if event == "bounce":
        return None if raw.get("type") == "blocked" else "bounced"  # blocked is temporary
    return SUPPRESS.get(str(event))


@router.post("/webhooks/sendgrid")
async def receive(request: Request) -> JSONResponse:
    state: WebState = request.app.state.clvflow
    if not state.webhook_public_key:
        return _reject(503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    signature = request.headers.get(EventWebhookHeader.SIGNATURE)
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP)
    if not signature or not timestamp:
        return _reject(401, "missing signature headers")
    try:
        sent_at = int(timestamp)
        body = (await request.body()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return _reject(400, "bad timestamp or body encoding")
    if abs(time.time() - sent_at) > state.max_webhook_age_seconds:
        return _reject(401, "stale timestamp")
    if not verify(state.webhook_public_key, body, signature, timestamp):
        return _reject(401, "signature does not match")
    try:
        batch = json.loads(body)
    except ValueError:
        return _reject(400, "body is not JSON")
    if not isinstance(batch, list):
        return _reject(400, "body is not a JSON array of events")
    rows = [event_row(raw) for raw in batch]
    new = set(state.ledger.add_events(rows))
    for raw, row in zip(batch, rows, strict=True):
        if row["event_id"] not in new or not isinstance(raw, dict) or not row.get("email"):
            continue
        reason = suppression_reason(raw)
        if reason is not None:
            state.ledger.suppress(
                row["email"], reason, source=f"sendgrid:{raw['event']}",
                customer_id=row.get("customer_id"), campaign=row.get("campaign"),
            )  # fmt: skip
    return JSONResponse(
        {
            "received": len(rows),
            "new": len(new),
            "unmapped": sum(
                1 for r in rows if r.get("message_id") is None and r["event"] != "malformed"
            ),
            "malformed": sum(1 for r in rows if r["event"] == "malformed"),
        }
    )
