"""How a project reaches SendGrid: the backend switch, the API host and its override, the key
from the environment or a Prefect Secret block (on the real Prefect test API), the sandbox
switch; and what every message carries (category, custom_args) so events map back."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fakes.sendgrid_standin import SendGridStandIn
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.outbox import OutboxSender
from clvflow.delivery.senders import open_sender
from clvflow.delivery.sendgrid import SANDBOX_REASON, SendGridSender
from clvflow.errors import ConfigError, DeliveryError
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from tests.conftest import add_win_back_campaign

KEY = "SG.config-test"
CAMPAIGN = "win-back"


@pytest.fixture(autouse=True)
def _win_back_campaign(demo_project: Path) -> None:
    add_win_back_campaign(demo_project)


AS_OF = dt.datetime(2026, 11, 23, 10, 0)
CLOSED_PORT_URL = "http://127.0.0.1:9"  # discard port: nothing listens there


@pytest.fixture
def standin() -> SendGridStandIn:
    with SendGridStandIn(api_keys={KEY}, seed=3) as server:
        yield server  # type: ignore[misc]


def configure(project_dir: Path, delivery: str) -> None:
    """Append a ``delivery:`` block and small batches to the demo project's clvflow.yaml."""
    path = project_dir / "clvflow.yaml"
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition("delivery:")
    tail = rest[rest.index("\nlimits:") :]
    path.write_text(
        head + delivery.strip() + "\n" + tail.replace("batch_size: 500", "batch_size: 60")
    )


def sendgrid_yaml(api_host: str, **extra: str) -> str:
    lines = ["delivery:", "  backend: sendgrid", "  sendgrid:", f"    api_host: {api_host}"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines)


def run(project_dir: Path):  # type: ignore[no-untyped-def]
    project = Project.load(project_dir)
    return run_campaign(project, load_campaigns(project.prefect_file)[CAMPAIGN], as_of=AS_OF)


def one_message() -> OutgoingMessage:
    return OutgoingMessage(
        message_id=1, campaign=CAMPAIGN, occurrence="once", customer_id="C1",
        to_email="c1@example.com", to_name="", from_email="shop@example.com",
        from_name="Shop", subject="Hello", html="<p>x</p>", text="x",
    )  # fmt: skip


def ledger_rows(project_dir: Path) -> dict[str, dict[str, str]]:
    """email → the ledger row of the campaign's message to it."""
    ledger = Ledger(Project.load(project_dir).ledger_url)
    with ledger.engine.connect() as con:
        rows = con.execute(select(messages).where(messages.c.campaign == CAMPAIGN)).mappings()
        out = {str(r["email"]).lower(): dict(r) for r in rows}
    ledger.close()
    return out


def test_the_backend_comes_from_clvflow_yaml_and_clvflow_delivery_overrides_it(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.delenv("CLVFLOW_DELIVERY", raising=False)
    assert isinstance(open_sender(Project.load(demo_project)), OutboxSender)
    monkeypatch.setenv("CLVFLOW_DELIVERY", "sendgrid")
    sender = open_sender(Project.load(demo_project))
    assert isinstance(sender, SendGridSender)
    sender.close()
    monkeypatch.setenv("CLVFLOW_DELIVERY", "carrier-pigeon")
    with pytest.raises(ConfigError, match="CLVFLOW_DELIVERY"):
        Project.load(demo_project)


def test_api_host_from_clvflow_yaml_and_sendgrid_api_host_overrides_it(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.delenv("CLVFLOW_DELIVERY", raising=False)
    # 1. the host written in clvflow.yaml is the one used
    configure(demo_project, sendgrid_yaml(standin.url))
    monkeypatch.delenv("SENDGRID_API_HOST", raising=False)
    first = run(demo_project)
    assert first.sent == first.planned > 0
    assert len(standin.deliveries()) == first.sent
    assert len(standin.accepted()) < first.sent  # messages share requests
    # 2. clvflow.yaml names a dead host; the environment variable wins
    configure(demo_project, sendgrid_yaml(CLOSED_PORT_URL))
    monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    assert Project.load(demo_project).config.delivery.sendgrid.api_host == standin.url
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    ledger_path = demo_project / ".clvflow" / "ledger.db"
    ledger_path.unlink()  # a fresh ledger, so the campaign sends again
    for suffix in ("-wal", "-shm"):
        Path(str(ledger_path) + suffix).unlink(missing_ok=True)
    second = run(demo_project)
    assert second.sent == first.sent
    assert len(standin.deliveries()) == 2 * first.sent


def test_every_message_carries_its_campaign_occurrence_customer_and_category(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    configure(demo_project, sendgrid_yaml(standin.url))
    summary = run(demo_project)
    rows = ledger_rows(demo_project)
    accepted = standin.deliveries()
    assert len(accepted) == summary.sent > 50
    for message in accepted:
        body = message.body
        [to] = body["personalizations"][0]["to"]
        row = rows[to["email"].lower()]
        assert body["custom_args"] == {
            "clvflow_campaign": CAMPAIGN,
            "clvflow_occurrence": row["occurrence"],
            "clvflow_customer": row["customer_id"],
            "clvflow_message": str(row["id"]),
        }
        assert body["categories"] == [CAMPAIGN]
        assert row["status"] == "sent" and row["provider_id"] == message.message_id
        assert "mail_settings" not in body  # not in sandbox mode
    # win-back resends every 90 days: the occurrence is the run's date
    assert {r["occurrence"] for r in rows.values()} == {"2026-11-23"}


def test_sandbox_mode_sends_nothing_and_the_ledger_says_so(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    configure(demo_project, sendgrid_yaml(standin.url, sandbox="true"))
    summary = run(demo_project)
    assert summary.planned > 0 and summary.failed == 0
    assert standin.accepted() == []  # nothing delivered
    sandboxed = standin.deliveries(sandbox=True)
    assert len(sandboxed) == summary.planned
    assert all(m.body["mail_settings"] == {"sandbox_mode": {"enable": True}} for m in sandboxed)
    rows = [r for r in ledger_rows(demo_project).values() if r["status"] != "holdout"]
    assert rows and {r["reason"] for r in rows} == {SANDBOX_REASON}


@pytest.mark.slow
def test_the_key_comes_from_a_prefect_secret_block_when_the_environment_has_none(
    prefect_api: None,
    demo_project: Path,
    standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flows (``clvflow run``, deployments) take the key from the environment, else from
    the Prefect Secret block that clvflow.yaml names."""
    from prefect.blocks.system import Secret

    from clvflow.orchestration.flows import campaign_flow

    def flow_run() -> dict[str, Any]:
        project = Project.load(demo_project)
        campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
        return campaign_flow(
            campaign=CAMPAIGN, spec=campaign.spec, as_of=AS_OF, project=str(demo_project)
        )

    block = f"sendgrid-key-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    configure(demo_project, sendgrid_yaml(standin.url, secret_block=block))
    with pytest.raises(DeliveryError, match="no SendGrid API key") as missing:
        flow_run()
    assert block in (missing.value.hint or "")
    assert standin.accepted() == []
    Secret(value=KEY).save(block)
    summary = flow_run()
    assert summary["sent"] == summary["planned"] > 0
    assert {m.api_key for m in standin.accepted()} == {KEY}
    # the environment, when set, wins over the block
    standin.reset()
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-the-environment")
    standin_keys = {"SG.from-the-environment"}
    with SendGridStandIn(standin_keys) as other:
        configure(demo_project, sendgrid_yaml(other.url, secret_block=block))
        with closing(open_sender(Project.load(demo_project))) as sender:
            [result] = sender.send_batch([one_message()])
        assert result.status == "sent"
        assert {m.api_key for m in other.accepted()} == standin_keys


def test_the_audit_catches_a_body_the_stand_in_should_not_have_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import http.client
    import json

    from tests.sendgrid_audit import audit_session

    monkeypatch.setattr("fakes.sendgrid_standin.app.validate_mail_send", lambda b, now: [])
    with audit_session() as audit, SendGridStandIn(KEY) as sg:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
        body = {"personalizations": [{"to": [{"email": "a@example.com"}]}], "subject": "no from"}
        conn.request("POST", "/v3/mail/send", body=json.dumps(body),
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})  # fmt: skip
        assert conn.getresponse().status == 202
        conn.close()
        broken = sg
    assert audit.checked == 1 and len(audit.invalid) == 1
    assert "'from' is a required property" in audit.invalid[0]
    broken.reset()  # keep the session's own audit clean of this deliberate breakage


def test_concurrency_goes_up_to_512_and_beyond_is_an_error_naming_the_key(
    demo_project: Path,
) -> None:
    configure(demo_project, sendgrid_yaml("https://api.sendgrid.com", concurrency="512"))
    assert Project.load(demo_project).config.delivery.sendgrid.concurrency == 512
    configure(demo_project, sendgrid_yaml("https://api.sendgrid.com", concurrency="513"))
    with pytest.raises(ConfigError) as caught:
        Project.load(demo_project)
    text = str(caught.value) + str(getattr(caught.value, "hint", ""))
    assert "delivery.sendgrid.concurrency" in text and "512" in text


def test_recipients_per_request_goes_up_to_sendgrids_1000(demo_project: Path) -> None:
    configure(demo_project, sendgrid_yaml("https://api.sendgrid.com"))
    assert Project.load(demo_project).config.delivery.sendgrid.recipients_per_request == 500
    configure(
        demo_project, sendgrid_yaml("https://api.sendgrid.com", recipients_per_request="1000")
    )
    assert Project.load(demo_project).config.delivery.sendgrid.recipients_per_request == 1000
    for bad in ("1001", "0"):
        configure(
            demo_project, sendgrid_yaml("https://api.sendgrid.com", recipients_per_request=bad)
        )
        with pytest.raises(ConfigError) as caught:
            Project.load(demo_project)
        text = str(caught.value) + str(getattr(caught.value, "hint", ""))
        assert "delivery.sendgrid.recipients_per_request" in text


def test_a_sender_that_cannot_start_stops_the_run_before_anything_is_claimed(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.delenv("SENDGRID_API_HOST", raising=False)
    configure(demo_project, sendgrid_yaml("ftp://not-an-api.example"))
    with pytest.raises(DeliveryError, match=r"delivery\.sendgrid\.api_host"):
        run(demo_project)  # the sending process starts while the run plans, then says why
    assert ledger_rows(demo_project) == {}  # nothing claimed, no holdout recorded


def test_a_batch_the_ledger_cannot_mark_sending_never_leaves(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sending process gets each batch ahead of time (staged); one whose ``sending``
    mark fails is dropped there: only what was marked was delivered."""
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    configure(demo_project, sendgrid_yaml(standin.url))
    marked = Ledger.mark_sending
    calls = []

    def mark_once(
        self: Ledger,
        ids: list[int],
        codes: Sequence[dict[str, Any]] = (),
        run_id: str | None = None,
    ) -> list[int]:
        calls.append(len(ids))
        if len(calls) > 1:
            raise OperationalError("UPDATE messages", {}, Exception("disk I/O error"))
        return marked(self, ids, codes, run_id)

    monkeypatch.setattr(Ledger, "mark_sending", mark_once)
    with pytest.raises(OperationalError, match="disk I/O error"):
        run(demo_project)
    rows = ledger_rows(demo_project).values()
    statuses = Counter(r["status"] for r in rows)
    assert statuses["sent"] == calls[0] == 60 and len(calls) >= 2
    assert statuses.keys() <= {"sent", "holdout"}  # the rest released, to be planned again
    assert len(standin.deliveries()) == 60
    # promo codes are stored with the mark: the sent messages' codes, none for the rest
    ledger = Ledger(Project.load(demo_project).ledger_url)
    coded = {str(c["customer_id"]) for c in ledger.all_promo_codes(CAMPAIGN)}
    ledger.close()
    assert coded == {str(r["customer_id"]) for r in rows if r["status"] == "sent"}
    assert {
        d.body["personalizations"][0]["to"][0]["email"].lower() for d in standin.deliveries()
    } == {r["email"].lower() for r in rows if r["status"] == "sent"}


def test_a_request_holds_the_messages_of_one_locale(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages share a request by the layout they were rendered from: each request's
    content has its locale's text, only the personal lines travel per recipient."""
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    configure(demo_project, sendgrid_yaml(standin.url))
    summary = run(demo_project)
    requests = standin.accepted()
    assert sum(len(r.body["personalizations"]) for r in requests) == summary.sent
    languages = []
    for request in requests:
        html = next(c["value"] for c in request.body["content"] if c["type"] == "text/html")
        languages.append(re.findall(r'<html lang="(\w+)"', html))  # shared, not a tag
    assert all(len(found) == 1 for found in languages)
    assert {found[0] for found in languages} == {"en", "hu", "ru"}
    assert len(requests) < summary.sent / 5  # grouped, by locale
