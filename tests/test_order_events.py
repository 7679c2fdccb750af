"""One shop order → at most one thank-you email, without Prefect: the event's data fills
what the shop's export lacks, unknown customers and orders are recorded with a reason, a
repeated event sends nothing; and the signed order webhook."""

from __future__ import annotations

import datetime as dt
import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.triggered import OrderPlaced, event_from_data, run_order_campaign
from clvflow.data.sources import open_shop_data
from clvflow.ledger.schema import messages, skips
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.web.app import create_app
from clvflow.web.orders import SIGNATURE_HEADER, sign
from tests.conftest import AS_OF, ProjectFactory, outbox_email

TEMPLATE = """\
---
subject: "Thank you{% if customer.first_name %}, {{ customer.first_name }}{% endif %}"
kind: marketing
---
<html><body>
{% if order %}<p>Order {{ order.order_id }}: {{ order.total | money }}</p>
{% for item in order["items"] %}<p>{{ item.quantity }} × {{ item.name }}</p>{% endfor %}{% endif %}
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</p>
</body></html>
"""

PREFECT_YAML = """\
deployments:
  - name: thank-you
    entrypoint: flows/order.py:order_flow
    triggers:
      - type: event
        match: {prefect.resource.id: "shop.order.*"}
        expect: [shop.order.placed]
        parameters: {order: "{{ event.payload }}"}
    parameters:
      campaign: thank-you
      spec: {segment: everyone, template: thanks, resend: per_order}
"""

FILES = {
    "segments/everyone.yaml": "description: all\nwhere:\n  customer_id: {is_set: true}\n",
    "templates/thanks.html.j2": TEMPLATE,
    "prefect.yaml": PREFECT_YAML,
}
SECRET = "order-webhook-test-secret"


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    return Project.load(make_project(FILES))


def _send(project: Project, placed: OrderPlaced) -> Any:
    campaign = load_campaigns(project.prefect_file)["thank-you"]
    return run_order_campaign(project, campaign, placed, as_of=AS_OF)


def _rows(project: Project, table):  # type: ignore[no-untyped-def]
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            return [dict(r) for r in con.execute(select(table)).mappings()]
    finally:
        ledger.close()


def _eml(project: Project, order_id: str, cid: str) -> email.message.EmailMessage:
    return outbox_email(project, "thank-you", order_id, cid)


def test_known_order_from_the_shops_data_once(project: Project) -> None:
    placed = OrderPlaced.model_validate(
        {"order": {"order_id": "O2"}, "customer": {"customer_id": "C1"}}
    )
    first = _send(project, placed)
    assert (first.sent, first.occurrence) == (1, "O2")
    text = _eml(project, "O2", "C1").get_body(preferencelist=("plain",)).get_content()
    # O2 in the tiny shop: 2 × Letterpress Thank-You Cards, 50.00 EUR
    assert "O2" in text and "2 × Letterpress Thank-You Cards" in text and "50" in text
    second = _send(project, placed)  # the same event again
    assert second.sent == 0 and second.skipped["already_sent"] == 1
    assert [(r["customer_id"], r["occurrence"], r["status"]) for r in _rows(project, messages)] == [
        ("C1", "O2", "sent")
    ]


def test_an_order_the_export_lacks_is_sent_from_the_event(project: Project) -> None:
    placed = OrderPlaced.model_validate(
        {
            "order": {
                "order_id": "O-NEW-1",
                "placed_at": "2026-11-23T11:30:00+00:00",
                "currency": "EUR",
                "items": [
                    {"product_id": "P4", "quantity": 1, "unit_price": 200},
                    {"product_id": "X9", "name": "Wax Seal Kit", "quantity": 3, "unit_price": 5},
                ],
            },
            "customer": {"customer_id": "C-NEW", "email": "new@example.com", "first_name": "Nia"},
        }
    )
    summary = _send(project, placed)
    assert summary.sent == 1
    msg = _eml(project, "O-NEW-1", "C-NEW")
    assert msg["Subject"] == "Thank you, Nia"
    assert msg["To"].addresses[0].addr_spec == "new@example.com"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    # P4's name comes from the shop's products; the total is 200 + 3 × 5 = 215
    assert "1 × Linen Wedding Album" in text and "3 × Wax Seal Kit" in text and "215" in text


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"order": {"order_id": "O2"}, "customer": {"customer_id": "C-NOBODY"}},
            "unknown_customer",
        ),
        ({"order": {"order_id": "O-MISSING"}, "customer": {"customer_id": "C1"}}, "unknown_order"),
    ],
)
def test_what_nobody_knows_is_recorded_with_a_reason(
    project: Project, payload: dict[str, Any], reason: str
) -> None:
    summary = _send(project, OrderPlaced.model_validate(payload))
    assert summary.sent == 0 and dict(summary.skipped) == {reason: 1}
    assert _rows(project, messages) == []
    recorded = [(r["customer_id"], r["occurrence"], r["reason"]) for r in _rows(project, skips)]
    assert recorded == [(payload["customer"]["customer_id"], payload["order"]["order_id"], reason)]


def test_consent_still_applies_to_triggered_mail(project: Project) -> None:
    # C3 does not accept marketing
    summary = _send(
        project,
        OrderPlaced.model_validate(
            {"order": {"order_id": "O6"}, "customer": {"customer_id": "C3"}}
        ),
    )
    assert summary.sent == 0 and summary.skipped["no_marketing_consent"] == 1


def test_event_from_data_carries_what_the_email_needs(project: Project) -> None:
    data = open_shop_data(project)
    try:
        placed = event_from_data(data, "C2", "O5", AS_OF)
        unknown = event_from_data(data, "C-X", "O-X", AS_OF, email="x@example.com", total=12.5)
    finally:
        data.close()
    assert placed.customer.email == "bela@example.com" and placed.customer.locale == "hu"
    assert placed.order.total == 40 and placed.order.placed_at == dt.datetime(2026, 8, 1, 10)
    # O5 in the tiny shop: one line, 1 × P1 at 40.00
    assert [(i.product_id, i.name, i.quantity, i.unit_price) for i in placed.order.items] == [
        ("P1", "Gold Foil Invitation Suite", 1, 40.0)
    ]
    assert unknown.customer.email == "x@example.com" and unknown.order.total == 12.5
    assert unknown.order.items == []


def test_order_model_rejects_unknown_keys_and_bad_ids() -> None:
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(
            {"order": {"order_id": "O1", "coupon": "X"}, "customer": {"customer_id": "C1"}}
        )
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate(
            {"order": {"order_id": "O1\r\nBcc: x"}, "customer": {"customer_id": "C1"}}
        )


# -- the webhook --------------------------------------------------------------------------
BODY = {
    "order": {"order_id": "O77", "total": 42.0, "items": [{"product_id": "P1", "unit_price": 42}]},
    "customer": {"customer_id": "C1", "email": "ann@example.com"},
}


@contextmanager
def _served(app: Any) -> Iterator[httpx.Client]:
    """The app on a real uvicorn server on a free local port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def webhook(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, list[OrderPlaced]]]:
    monkeypatch.setenv("CLVFLOW_ORDER_WEBHOOK_SECRET", SECRET)
    received: list[OrderPlaced] = []

    def emit(placed: OrderPlaced) -> str:
        received.append(placed)
        return f"event-{len(received)}"

    with _served(create_app(project, order_emitter=emit)) as client:
        yield client, received


def test_signed_order_is_accepted_and_emitted(
    webhook: tuple[httpx.Client, list[OrderPlaced]],
) -> None:
    client, received = webhook
    body = json.dumps(BODY).encode()
    reply = client.post(
        "/webhooks/orders", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
    )
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"event": "shop.order.placed", "event_id": "event-1", "order_id": "O77"}
    assert received == [OrderPlaced.model_validate(BODY)]


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        ("no-signature", 401),
        ("wrong-secret", 401),
        ("altered-body", 401),
        ("extra-key", 422),
        ("not-json", 400),
    ],
)
def test_bad_order_webhooks_are_rejected_and_emit_nothing(
    webhook: tuple[httpx.Client, list[OrderPlaced]], mangle: str, status: int
) -> None:
    client, received = webhook
    body = json.dumps(BODY).encode()
    headers = {SIGNATURE_HEADER: sign(SECRET, body)}
    if mangle == "no-signature":
        headers = {}
    elif mangle == "wrong-secret":
        headers = {SIGNATURE_HEADER: sign("another-secret", body)}
    elif mangle == "altered-body":
        body = body.replace(b"42.0", b"4.0")
    elif mangle == "extra-key":
        body = json.dumps({**BODY, "note": "hi"}).encode()
        headers = {SIGNATURE_HEADER: sign(SECRET, body)}
    elif mangle == "not-json":
        body = b"{not json"
        headers = {SIGNATURE_HEADER: sign(SECRET, body)}
    reply = client.post("/webhooks/orders", content=body, headers=headers)
    assert reply.status_code == status, reply.text
    if status == 422:
        assert reply.json()["problems"][0]["at"] == "note"
    assert received == []


def test_without_a_secret_the_endpoint_refuses(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLVFLOW_ORDER_WEBHOOK_SECRET", raising=False)
    body = json.dumps(BODY).encode()
    with _served(create_app(project, order_emitter=lambda p: "never")) as client:
        reply = client.post(
            "/webhooks/orders", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
        )
    assert reply.status_code == 503 and "CLVFLOW_ORDER_WEBHOOK_SECRET" in reply.text
