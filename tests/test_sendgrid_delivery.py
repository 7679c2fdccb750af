"""Delivery through SendGrid's API, against the local stand-in (which validates every request
against SendGrid's published schema): exactly once under rate limits, server errors,
dropped connections, a killed process and two concurrent processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import jsonschema
import pytest
from fakes.sendgrid_standin import FaultConfig, SendGridStandIn
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.delivery.base import SendAbortedError, SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.outbox import OutboxSender
from clvflow.delivery.sendgrid import RetryPolicy, SendGridSender
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from tests.conftest import ROOT, add_win_back_campaign, outbox_email

KEY = "SG.test-key"
AS_OF = "2026-11-23T10:00"
CAMPAIGN = "win-back"


@pytest.fixture(autouse=True)
def _win_back_campaign(demo_project: Path) -> None:
    add_win_back_campaign(demo_project)


SCHEMA = json.loads(
    (
        ROOT / "tests" / "fakes" / "sendgrid_standin" / "mail_send_request.patched.schema.json"
    ).read_text()
)


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    """The stand-in; afterwards, every body it accepted is checked once more against
    SendGrid's published request schema (the stand-in's copy, which its tests keep equal
    to ../shared/sendgrid/mail_send_request.patched.schema.json)."""
    with SendGridStandIn(api_keys={KEY}, seed=11) as server:
        yield server
        validator = jsonschema.Draft7Validator(SCHEMA)
        for accepted in server.accepted():
            validator.validate(accepted.body)


@pytest.fixture(params=[None])
def per_request(request: pytest.FixtureRequest) -> int | None:
    """``delivery.sendgrid.recipients_per_request`` (None: the default); a test takes
    others with ``indirect``: 1 sends a request per message, more groups them."""
    value: int | None = request.param
    return value


@pytest.fixture
def sg_project(
    demo_project: Path,
    standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
    per_request: int | None,
) -> Project:
    config = demo_project / "clvflow.yaml"
    text_ = config.read_text().replace("batch_size: 500", "batch_size: 40\n  run_lease_seconds: 1")
    if per_request is not None:
        setting = f"delivery:\n  sendgrid:\n    recipients_per_request: {per_request}\n"
        text_ = text_.replace("delivery:\n", setting, 1)
    config.write_text(text_)
    monkeypatch.setenv("CLVFLOW_DELIVERY", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    return Project.load(demo_project)


def _statuses(project: Project) -> dict[str, str]:
    ledger = Ledger(project.ledger_url)
    with ledger.engine.connect() as con:
        rows = con.execute(
            select(messages.c.email, messages.c.status).where(messages.c.campaign == CAMPAIGN)
        ).all()
    ledger.close()
    return {str(r.email).lower(): str(r.status) for r in rows}


def _run(project: Project):  # type: ignore[no-untyped-def]
    import datetime as dt

    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    return run_campaign(project, campaign, as_of=dt.datetime.fromisoformat(AS_OF))


class BothBackends:
    """The outbox and SendGrid at once: each batch is written as the outbox writes it,
    then sent through SendGrid; SendGrid's results are the run's."""

    name = "sendgrid"

    def __init__(self, outbox: OutboxSender, sendgrid: SendGridSender) -> None:
        self.outbox = outbox
        self.sendgrid = sendgrid

    def prepare(self, batch: Sequence[OutgoingMessage]) -> Callable[[], list[SendResult]]:
        return partial(self.send_batch, batch)

    def send_batch(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        assert {r.status for r in self.outbox.send_batch(batch)} == {"sent"}
        return self.sendgrid.send_batch(batch)

    def close(self) -> None:
        self.outbox.close()
        self.sendgrid.close()


@pytest.mark.slow
def test_a_shipped_campaign_reaches_every_recipient_with_exactly_the_outbox_message(
    sg_project: Project, standin: SendGridStandIn
) -> None:
    """Grouped requests carry the lines recipients share once and each one's own as
    substitutions; applied, they give every recipient the subject, HTML and text part the
    outbox backend writes for them, character for character."""
    import datetime as dt

    campaign = load_campaigns(sg_project.prefect_file)[CAMPAIGN]
    sender = BothBackends(OutboxSender(sg_project.outbox_dir), SendGridSender(KEY, standin.url))
    try:
        summary = run_campaign(
            sg_project, campaign, as_of=dt.datetime.fromisoformat(AS_OF), sender=sender
        )
    finally:
        sender.close()
    deliveries = standin.deliveries()
    assert len(deliveries) == summary.sent == summary.planned > 100
    assert len(standin.accepted()) < summary.sent / 5  # shared requests
    for delivery in deliveries:
        body = delivery.body
        args = body["custom_args"]
        written = outbox_email(
            sg_project, CAMPAIGN, args["clvflow_occurrence"], args["clvflow_customer"]
        )
        parts = {part["type"]: part["value"] for part in body["content"]}
        assert body["subject"] == written["subject"]
        assert body["personalizations"][0]["to"][0]["email"] == written["to"].addresses[0].addr_spec
        html = written.get_body(("html",))
        text = written.get_body(("plain",))
        assert html is not None and text is not None
        # RFC 5322 files end their lines with CRLF; the message itself has LF
        assert parts["text/html"] == html.get_content().replace("\r\n", "\n")
        assert parts["text/plain"] == text.get_content().replace("\r\n", "\n")
        headers = body["headers"]
        for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "X-Clvflow-Campaign"):
            assert headers[name] == written[name]


@pytest.mark.slow
@pytest.mark.parametrize("per_request", [1, 3], indirect=True)
def test_every_message_accepted_exactly_once_despite_429_and_5xx(
    sg_project: Project, standin: SendGridStandIn, per_request: int
) -> None:
    standin.set_faults(
        FaultConfig(rate_429=0.10, rate_500=0.03, rate_503=0.02, rate_limit_reset_s=0.2)
    )
    summary = _run(sg_project)
    assert summary.planned > 50
    assert (summary.sent, summary.failed, summary.unknown) == (summary.planned, 0, 0)
    counts = standin.status_counts()
    assert counts[429] > 0 and counts[500] + counts[503] > 0  # the faults did happen
    delivered = standin.deliveries_per_recipient()
    sent = {email for email, status in _statuses(sg_project).items() if status == "sent"}
    assert set(delivered) == sent
    assert set(delivered.values()) == {1}
    # one message a request, or up to ``per_request`` sharing one
    assert max(len(m.body["personalizations"]) for m in standin.accepted()) == per_request
    for delivery in standin.deliveries():  # each email as its recipient gets it
        own = delivery.body
        url = own["headers"]["List-Unsubscribe"].split(">")[0][1:]  # this customer's link
        assert url in own["content"][0]["value"] and url in own["content"][1]["value"]
        assert own["subject"] and "%clv" not in own["content"][1]["value"]
    body = standin.deliveries()[0].body
    args = body["custom_args"]
    assert args["clvflow_campaign"] == CAMPAIGN and args["clvflow_customer"]
    assert body["categories"] == [CAMPAIGN]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    # a second run sends nothing more
    again = _run(sg_project)
    assert again.sent == 0 and again.skipped["already_sent"] == summary.sent
    assert set(standin.deliveries_per_recipient().values()) == {1}


@pytest.mark.slow
def test_bad_key_stops_the_run_and_sends_nothing(
    sg_project: Project, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    with pytest.raises(SendAbortedError, match="401"):
        _run(sg_project)
    assert standin.accepted() == []
    # every claim was given back; only the (deterministic) holdout decisions stay
    assert set(_statuses(sg_project).values()) == {"holdout"}
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    summary = _run(sg_project)
    assert summary.sent == summary.planned > 0


@pytest.mark.slow
def test_bad_key_exits_non_zero_from_the_cli(
    prefect_api: None,
    sg_project: Project,
    standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from clvflow.cli.main import main

    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    code = main(["run", CAMPAIGN, "--project", str(sg_project.root), "--as-of", AS_OF])
    assert code == 7
    err = capsys.readouterr().err
    assert "SendGrid refused the request: 401" in err and "Traceback" not in err
    assert standin.accepted() == []


@pytest.mark.slow
def test_maybe_sent_is_reported_unknown_and_never_resent(
    sg_project: Project, standin: SendGridStandIn
) -> None:
    standin.set_faults(FaultConfig(rate_accept_drop=0.2))
    first = _run(sg_project)
    assert first.unknown > 0
    assert first.sent + first.unknown == first.planned
    standin.set_faults(FaultConfig())
    second = _run(sg_project)
    assert second.sent == 0
    assert set(standin.deliveries_per_recipient().values()) == {1}
    statuses = _statuses(sg_project)
    assert sum(s == "unknown" for s in statuses.values()) == first.unknown


def test_a_400_fails_that_message_and_the_batch_goes_on(standin: SendGridStandIn) -> None:
    def message(mid: int, subject: str) -> OutgoingMessage:
        return OutgoingMessage(
            message_id=mid, campaign="c", occurrence="once", customer_id=f"C{mid}",
            to_email=f"c{mid}@example.com", to_name="", from_email="shop@example.com",
            from_name="Shop", subject=subject, html="<p>x</p>", text="x",
        )  # fmt: skip

    sender = SendGridSender(KEY, standin.url, retry=RetryPolicy(attempts=2, base_seconds=0.01))
    results = sender.send_batch([message(1, "Hello"), message(2, ""), message(3, "Hi")])
    sender.close()
    by_id = {r.message_id: r for r in results}
    assert by_id[1].status == "sent" and by_id[3].status == "sent"
    assert by_id[2].status == "failed" and (by_id[2].reason or "").startswith("400")
    assert by_id[1].provider_id


RUNNER = """
import datetime as dt, sys
from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.project.layout import Project
project = Project.load(sys.argv[1])
summary = run_campaign(project, load_campaigns(project.prefect_file)[sys.argv[2]],
                       as_of=dt.datetime.fromisoformat(sys.argv[3]))
print(summary.sent, summary.skipped.get("claimed_by_another_run", 0), flush=True)
"""


def _spawn(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(project.root), CAMPAIGN, AS_OF],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("per_request", [1, 2], indirect=True)
def test_killed_mid_campaign_then_rerun_sends_each_recipient_at_most_once(
    sg_project: Project, standin: SendGridStandIn
) -> None:
    planned = set(_run_plan_emails(sg_project))
    standin.set_faults(FaultConfig(rate_slow=1.0, slow_delay_s=0.05))
    child = _spawn(sg_project)
    deadline = time.monotonic() + 60
    while len(standin.deliveries()) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    before = len(standin.deliveries())
    assert 30 <= before < len(planned)  # killed mid-campaign
    standin.set_faults(FaultConfig())
    time.sleep(1.2)  # the dead run's lease (run_lease_seconds: 1) expires
    summary = _run(sg_project)
    statuses = _statuses(sg_project)
    delivered = standin.deliveries_per_recipient()
    assert set(delivered.values()) == {1}  # nobody twice
    unknown = {e for e, s in statuses.items() if s == "unknown"}
    assert summary.earlier_unknown == len(unknown)
    assert summary.released > 0  # claimed but never handed over: planned and sent again
    for email, status in statuses.items():
        if status == "sent":
            assert delivered[email] == 1
    assert set(statuses.values()) <= {"sent", "unknown", "holdout"}  # nothing left open
    # every planned recipient: delivered exactly once, or reported unknown (delivered at
    # most once: the dead run may or may not have got it out, and it is not sent again)
    assert {e for e, s in statuses.items() if s == "sent"} | unknown == planned
    assert set(delivered) <= planned
    assert all(delivered[e] == 1 for e in planned - unknown)
    assert summary.unknown == 0 and summary.failed == 0


@pytest.mark.slow
def test_two_processes_on_one_campaign_send_each_recipient_once(
    pg_ledger: str, sg_project: Project, standin: SendGridStandIn
) -> None:
    standin.set_faults(FaultConfig(rate_slow=0.5, slow_delay_s=0.01))
    project = Project.load(sg_project.root)
    assert project.ledger_url == pg_ledger
    planned = set(_run_plan_emails(project))
    children = [_spawn(project), _spawn(project)]
    outputs = [c.communicate(timeout=300) for c in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    sent = [int(out.split()[0]) for out, _ in outputs]
    delivered = standin.deliveries_per_recipient()
    assert set(delivered.values()) == {1}
    assert sum(sent) == len(delivered) == sum(1 for s in _statuses(project).values() if s == "sent")
    assert set(delivered) == planned  # every planned recipient, each exactly once


def test_suppression_sync_pages_through_every_list_and_planning_skips_them(
    sg_project: Project, standin: SendGridStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    from clvflow.cli.main import main
    from clvflow.delivery.suppressions import sync_suppressions

    first = _run_plan_emails(sg_project)
    standin.add_suppression("unsubscribes", first[0].upper())
    standin.add_suppression("bounces", first[1])
    standin.add_suppression("spam_reports", first[2])
    for i in range(7):
        standin.add_suppression("bounces", f"gone{i}@example.com")
    ledger = Ledger(sg_project.ledger_url)
    added = sync_suppressions(ledger, standin.url, KEY, page_size=3)
    assert added == {"unsubscribed": 1, "bounced": 8, "spam_report": 1}
    assert sync_suppressions(ledger, standin.url, KEY, page_size=3) == {}
    ledger.close()
    assert main(["suppressions", "sync", "--project", str(sg_project.root)]) == 0
    assert "0 new suppression(s): nothing new" in capsys.readouterr().out
    summary = _run(sg_project)
    assert summary.skipped["unsubscribed"] == 1
    assert summary.skipped["bounced"] == 1
    assert summary.skipped["spam_report"] == 1
    assert not set(first[:3]) & set(standin.deliveries_per_recipient())


def _run_plan_emails(project: Project) -> list[str]:
    """The addresses a run would send to, in order (a dry run sends and records nothing)."""
    import datetime as dt

    from clvflow.campaigns.run import campaign_job, segment_members
    from clvflow.pipeline import run as pipeline
    from clvflow.pipeline.workspace import open_workspace

    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    when = dt.datetime.fromisoformat(AS_OF)
    job = campaign_job(project, campaign, when, dry_run=True)
    with open_workspace(project, when) as ws:
        members = segment_members(ws, campaign.spec.segment, when)
        return [str(e).lower() for e in pipeline.plan(ws, job, members).send["email"]]
