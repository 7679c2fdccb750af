"""The web app: one-click unsubscribe end to end, and the signed SendGrid Event Webhook
with a real P-256 key pair."""

from __future__ import annotations

import base64
import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from email import policy
from urllib.parse import urlparse

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.counts import count_rows, summary_markdown
from clvflow.campaigns.run import run_campaign
from clvflow.ledger.schema import events, messages, suppressions
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.web.app import create_app
from tests.conftest import AS_OF, ProjectFactory
from tests.test_campaign_run import FILES

SECOND = """
  - name: second
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: second
      spec: {segment: everyone, template: hello, resend: once}
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    return Project.load(make_project({**FILES, "prefect.yaml": FILES["prefect.yaml"] + SECOND}))


@pytest.fixture
def key_pair(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    return private


@pytest.fixture
def client(project: Project, key_pair: ec.EllipticCurvePrivateKey) -> Iterator[httpx.Client]:
    """The app served by a real uvicorn server on a free local port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
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


def _suppressed(project: Project) -> dict[str, str]:
    ledger = Ledger(project.ledger_url)
    with ledger.engine.connect() as con:
        rows = con.execute(select(suppressions.c.email, suppressions.c.reason)).all()
    ledger.close()
    return {str(r[0]): str(r[1]) for r in rows}


def test_one_click_unsubscribe_end_to_end(project: Project, client: httpx.Client) -> None:
    campaigns = load_campaigns(project.prefect_file)
    run_campaign(project, campaigns["everyone"], as_of=AS_OF)
    eml = (project.outbox_dir / "everyone" / "once" / "C2.eml").read_bytes()
    msg = email.message_from_bytes(eml, policy=policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = msg["List-Unsubscribe"].split(",")[0].strip("<> ")
    path = urlparse(url).path.removeprefix("/email")  # base_url is https://shop.example/email
    form = {"content": "List-Unsubscribe=One-Click",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}  # fmt: skip
    response = client.post(path, **form)  # type: ignore[arg-type]
    assert response.status_code == 200 and "unsubscribed" in response.text
    assert _suppressed(project) == {"bela@example.com": "unsubscribed"}
    again = client.post(path, **form)  # type: ignore[arg-type]
    assert again.status_code == 200 and _suppressed(project) == {"bela@example.com": "unsubscribed"}
    summary = run_campaign(project, campaigns["second"], as_of=AS_OF)
    assert summary.skipped["unsubscribed"] == 1
    assert not (project.outbox_dir / "second" / "once" / "C2.eml").exists()
    # and says so, in the run's summary (the Prefect artifact and the terminal table)
    assert {"what": "skipped: unsubscribed", "count": 1} in count_rows(summary)
    assert "| skipped: unsubscribed | 1 |" in summary_markdown(summary)
    assert summary.sent == 3  # the other consenting customers with valid addresses


def test_get_confirms_before_unsubscribing(project: Project, client: httpx.Client) -> None:
    from clvflow.compliance.secret import signing_key
    from clvflow.compliance.unsubscribe import make_token

    token = make_token(signing_key(project.state_dir, allow_local=True), "C4", "everyone")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert _suppressed(project) == {}
    assert client.post(f"/unsubscribe/{token}").status_code == 200
    assert _suppressed(project) == {"dora@example.com": "unsubscribed"}  # from the shop's data


@pytest.mark.parametrize("token", ["QzF4ZXZlcnlvbmU.AAAAAAAAAAAAAAAAAAAAAA", "garbage", "a.b.c"])
def test_forged_tokens_are_rejected(client: httpx.Client, project: Project, token: str) -> None:
    assert client.get(f"/unsubscribe/{token}").status_code == 400
    assert (
        client.post(f"/unsubscribe/{token}", content="List-Unsubscribe=One-Click").status_code
        == 400
    )
    assert _suppressed(project) == {}


def _signed(
    private: ec.EllipticCurvePrivateKey, body: str, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = private.sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
    }


BATCH = [
    {"email": "ann@example.com", "event": "delivered", "sg_event_id": "e1", "timestamp": 1795000000,
     "clvflow_message": "1", "clvflow_campaign": "everyone", "clvflow_customer": "C1"},
    {"email": "Bela@Example.com", "event": "bounce", "type": "bounce", "sg_event_id": "e2", "timestamp": 1795000001},
    {"email": "dora@example.com", "event": "bounce", "type": "blocked", "sg_event_id": "e3", "timestamp": 1795000002},
    {"email": "eve@example.com", "event": "spamreport", "sg_event_id": "e4", "timestamp": 1795000003},
    {"email": "fay@example.com", "event": "unsubscribe", "sg_event_id": "e5", "timestamp": 1795000004},
    {"email": "ann@example.com", "event": "open", "sg_event_id": "e6", "timestamp": "not-a-time"},
    "not an event",
]  # fmt: skip


def test_signed_batch_is_recorded_once_and_suppresses(
    client: httpx.Client, project: Project, key_pair: ec.EllipticCurvePrivateKey
) -> None:
    body = json.dumps(BATCH)
    response = client.post("/webhooks/sendgrid", content=body, headers=_signed(key_pair, body))
    assert response.status_code == 200
    assert response.json() == {"received": 7, "new": 7, "unmapped": 5, "malformed": 1}
    assert _suppressed(project) == {
        "bela@example.com": "bounced",
        "eve@example.com": "spam_report",
        "fay@example.com": "unsubscribed",
    }  # a 'blocked' bounce is temporary: dora is not suppressed
    replay = client.post("/webhooks/sendgrid", content=body, headers=_signed(key_pair, body))
    assert replay.status_code == 200 and replay.json()["new"] == 0
    ledger = Ledger(project.ledger_url)
    with ledger.engine.connect() as con:
        mapped = con.execute(
            select(events.c.message_id, events.c.campaign, events.c.customer_id).where(
                events.c.event_id == "e1"
            )
        ).one()
    assert tuple(mapped) == (1, "everyone", "C1")  # mapped back through custom_args
    assert ledger.event_counts() == {
        "delivered": 1,
        "bounce": 2,
        "spamreport": 1,
        "unsubscribe": 1,
        "open": 1,
        "malformed": 1,
    }
    ledger.close()


def test_rejected_batches_record_nothing(
    client: httpx.Client, project: Project, key_pair: ec.EllipticCurvePrivateKey
) -> None:
    body = json.dumps(BATCH[:2])
    good = _signed(key_pair, body)
    other = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "altered body": (body.replace("e1", "e9"), good),
        "wrong key": (body, _signed(other, body)),
        "stale timestamp": (body, _signed(key_pair, body, int(time.time()) - 3600)),
        "not base64": (
            body,
            {**good, "X-Twilio-Email-Event-Webhook-Signature": "%%%not-base64%%%"},
        ),
        "no signature": (body, {"Content-Type": "application/json"}),
    }
    for label, (content, headers) in cases.items():
        response = client.post("/webhooks/sendgrid", content=content, headers=headers)
        assert 400 <= response.status_code < 500, label
    ledger = Ledger(project.ledger_url)
    assert ledger.event_counts() == {}
    ledger.close()
    assert _suppressed(project) == {}


def test_webhook_events_feed_the_report(
    client: httpx.Client, project: Project, key_pair: ec.EllipticCurvePrivateKey
) -> None:
    """Events posted for real ledger messages show in the report's engagement counts:
    messages with at least one event of each kind (a second open is not a second message)."""
    import datetime as dt

    from sqlalchemy import update

    from clvflow.reporting.report import measure_campaigns

    run_campaign(project, load_campaigns(project.prefect_file)["everyone"], as_of=AS_OF)
    ledger = Ledger(project.ledger_url)
    sent = dt.datetime(2026, 11, 23, 11, 0)
    with ledger.engine.begin() as con:
        con.execute(update(messages).values(planned_at=sent, finished_at=sent))
        ids = {
            str(r.customer_id): int(r.id)
            for r in con.execute(select(messages.c.id, messages.c.customer_id))
        }
    ledger.close()

    def event(n: int, kind: str, customer: str) -> dict[str, object]:
        return {"email": f"{customer}@example.com", "event": kind, "sg_event_id": f"x{n}",
                "timestamp": 1795400000 + n, "clvflow_message": str(ids[customer]),
                "clvflow_campaign": "everyone", "clvflow_customer": customer}  # fmt: skip

    batch = [
        event(1, "delivered", "C1"), event(2, "delivered", "C2"), event(3, "delivered", "C4"),
        event(4, "open", "C1"), event(5, "open", "C1"), event(6, "open", "C2"),
        event(7, "click", "C1"), event(8, "unsubscribe", "C4"),
    ]  # fmt: skip
    body = json.dumps(batch)
    response = client.post("/webhooks/sendgrid", content=body, headers=_signed(key_pair, body))
    assert response.status_code == 200 and response.json()["unmapped"] == 0
    measured = measure_campaigns(project, dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 30))
    counts = measured.engagement.loc["everyone"].to_dict()
    assert counts == {"delivered": 3, "open": 2, "click": 1, "bounce": 0, "spamreport": 0,
                      "unsubscribe": 1}  # fmt: skip
