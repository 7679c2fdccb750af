"""A campaign run on the tiny shop, through the engine (no Prefect): planning reasons,
outbox files, headers, idempotent re-runs, holdout and promo codes in the ledger."""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Callable, Sequence
from email import policy
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import campaign_job, run_campaign, segment_members
from clvflow.delivery.base import SendResult
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.outbox import OutboxSender
from clvflow.ledger.schema import messages, promo_codes, runs, skips
from clvflow.ledger.store import Ledger
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.render import planned_rows
from clvflow.pipeline.workspace import open_workspace
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ProjectFactory

TEMPLATE = """\
---
subject: "Hello {{ customer.first_name }}"
preheader: "A note for you"
---
<html><head><style>p { color: #333; }</style></head><body>
<p>Dear {{ customer.first_name }},</p>
{% if order %}<p>Your order {{ order.order_id }}: {{ order.total | money }}</p>{% endif %}
{% if promo %}<p>Code {{ promo.code }}</p>{% endif %}
{% for p in recommendations %}<p>{{ p.name }}</p>{% endfor %}
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</p>
</body></html>
"""

PREFECT_YAML = """\
deployments:
  - name: everyone
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: everyone
      spec: {segment: everyone, template: hello, resend: once}
  - name: one-by-one
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: one-by-one
      spec: {segment: everyone, template: hello, resend: once, batch_size: 1}
  - name: win-back
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: win-back
      spec:
        segment: everyone
        template: hello
        holdout_percent: 40
        promo: {discount_percent: 15, min_order: 40, valid_days: 21, prefix: BACK}
"""

FILES = {
    "segments/everyone.yaml": "description: all\nwhere:\n  customer_id: {is_set: true}\n",
    "templates/hello.html.j2": TEMPLATE,
    "prefect.yaml": PREFECT_YAML,
}


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    return Project.load(make_project(FILES))


def _campaign(project: Project, name: str):  # type: ignore[no-untyped-def]
    return load_campaigns(project.prefect_file)[name]


def _rows(project: Project, table, *where):  # type: ignore[no-untyped-def]
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            return [dict(r) for r in con.execute(select(table).where(*where)).mappings()]
    finally:
        ledger.close()


def test_first_run_sends_and_explains_every_skip(project: Project) -> None:
    summary = run_campaign(project, _campaign(project, "everyone"), as_of=AS_OF)
    # C3 opted out of marketing, C6 has an invalid address; the other four get it.
    assert summary.members == 6
    assert dict(summary.skipped) == {"no_marketing_consent": 1, "invalid_address": 1}
    assert (summary.sent, summary.failed) == (4, 0)
    files = sorted((project.outbox_dir / "everyone" / "once").glob("*.eml"))
    assert [f.stem for f in files] == ["C1", "C2", "C4", "C5"]
    sent = _rows(project, messages, messages.c.campaign == "everyone")
    assert sorted((r["customer_id"], r["status"]) for r in sent) == [
        ("C1", "sent"), ("C2", "sent"), ("C4", "sent"), ("C5", "sent"),
    ]  # fmt: skip
    skipped = _rows(project, skips, skips.c.campaign == "everyone")
    assert sorted((r["customer_id"], r["reason"]) for r in skipped) == [
        ("C3", "no_marketing_consent"), ("C6", "invalid_address"),
    ]  # fmt: skip


def test_message_is_a_real_email(project: Project) -> None:
    run_campaign(project, _campaign(project, "everyone"), as_of=AS_OF)
    raw = (project.outbox_dir / "everyone" / "once" / "C2.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Hello Béla"
    assert msg["To"].addresses[0].addr_spec == "bela@example.com"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"]
    assert "<https://shop.example/email/unsubscribe/" in unsubscribe and "<mailto:" in unsubscribe
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    html_content = html.get_content()
    assert 'style="color: #333' in html_content  # CSS inlined
    assert "<style" not in html_content
    assert "O5" in text.get_content()  # latest order of C2
    assert "1 Test Street" in text.get_content()
    index = (project.outbox_dir / "index.html").read_text()
    assert "everyone/once/C2.eml" in index


def test_second_run_sends_nothing(project: Project) -> None:
    campaign = _campaign(project, "everyone")
    first = run_campaign(project, campaign, as_of=AS_OF)
    second = run_campaign(project, campaign, as_of=AS_OF)
    assert first.sent == 4
    assert second.sent == 0
    assert second.skipped["already_sent"] == 4
    assert len(_rows(project, messages, messages.c.campaign == "everyone")) == 4


def test_lookup_tables_that_fail_send_nothing_and_release_the_claims(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-run lookup tables (latest orders, recommendations) fail as the first batch
    renders: nothing is sent, the claims are released, and the next run sends everything."""
    from clvflow.errors import DataError
    from clvflow.personalization.batch import Personalization

    looked_up = Personalization.for_customers

    def failing(self: Personalization, *args: object, **kwargs: object) -> None:
        raise DataError("the order lines cannot be read")

    monkeypatch.setattr(Personalization, "for_customers", failing)
    campaign = _campaign(project, "everyone")
    with pytest.raises(DataError, match="order lines"):
        run_campaign(project, campaign, as_of=AS_OF)
    assert _rows(project, messages, messages.c.campaign == "everyone") == []  # released
    assert not list(project.outbox_dir.glob("everyone/**/*.eml"))
    [failed] = _rows(project, runs, runs.c.campaign == "everyone")
    assert failed["status"] == "failed"
    monkeypatch.setattr(Personalization, "for_customers", looked_up)
    assert run_campaign(project, campaign, as_of=AS_OF).sent == 4


def test_every_delivered_batch_renews_the_run_lease(project: Project) -> None:
    """A run's lease is renewed with each batch's outcomes, so a long run is never taken
    for a dead one by the next run."""
    import datetime as dt

    from sqlalchemy import update

    from clvflow.ledger.store import utcnow

    job = campaign_job(project, _campaign(project, "everyone"), AS_OF)
    with open_workspace(project, AS_OF) as ws:
        planned = pipeline.plan(ws, job, segment_members(ws, "everyone", AS_OF))
        claims = pipeline.claim_plan(ws, job, planned)
        with ws.ledger.engine.begin() as con:  # as if the run had been slow until now
            con.execute(
                update(runs)
                .where(runs.c.run_id == job.run_id)
                .values(lease_until=dt.datetime(2000, 1, 1))
            )
        sender = OutboxSender(project.outbox_dir)
        assert pipeline.send_batch(ws, job, claims, sender, planned_rows(planned.send)).sent == 4
        [lease] = _rows(project, runs, runs.c.run_id == job.run_id)
    assert lease["lease_until"] > utcnow()


class Watching:
    """The real outbox; as each batch arrives, it notes the status of every message of the
    run in the ledger."""

    name = "outbox"

    def __init__(self, project: Project) -> None:
        self.outbox = OutboxSender(project.outbox_dir)
        self.project = project
        self.seen: list[dict[str, int]] = []

    def prepare(self, batch: Sequence[OutgoingMessage]) -> Callable[[], list[SendResult]]:
        return partial(self.send_batch, batch)

    def send_batch(self, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        rows = _rows(self.project, messages, messages.c.campaign == "one-by-one")
        self.seen.append(dict(Counter(str(r["status"]) for r in rows)))
        return self.outbox.send_batch(batch)

    def close(self) -> None:
        self.outbox.close()


def test_a_batch_is_sending_only_once_the_sender_takes_it(project: Project) -> None:
    """Batch k + 1 renders while batch k is on the wire, but it is marked ``sending`` only
    as the sender takes it, and batch k is recorded by then: a crash never leaves a
    message ``sending`` (later: ``unknown``) that was never handed over."""
    sender = Watching(project)
    summary = run_campaign(project, _campaign(project, "one-by-one"), as_of=AS_OF, sender=sender)
    assert summary.sent == 4
    assert sender.seen == [
        {"sending": 1, "claimed": 3},
        {"sent": 1, "sending": 1, "claimed": 2},
        {"sent": 2, "sending": 1, "claimed": 1},
        {"sent": 3, "sending": 1},
    ]


def test_a_batch_that_fails_to_render_stops_the_run_and_the_one_on_the_wire_is_recorded(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clvflow.rendering.composer import Composer

    composed = Composer.compose
    calls = 0

    def third_fails(self: Composer, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("the template folder went away")
        return composed(self, *args, **kwargs)

    monkeypatch.setattr(Composer, "compose", third_fails)
    with pytest.raises(OSError, match="went away"):
        run_campaign(project, _campaign(project, "one-by-one"), as_of=AS_OF)
    rows = _rows(project, messages, messages.c.campaign == "one-by-one")
    # batch 2 was on the wire while batch 3 rendered: recorded sent; 3 and 4 released
    assert sorted((r["customer_id"], r["status"]) for r in rows) == [("C1", "sent"), ("C2", "sent")]
    assert len(list(project.outbox_dir.glob("one-by-one/**/*.eml"))) == 2


def test_dry_run_records_nothing(project: Project) -> None:
    summary = run_campaign(project, _campaign(project, "everyone"), as_of=AS_OF, dry_run=True)
    assert summary.sent == 4
    assert _rows(project, messages) == []
    assert not project.outbox_dir.exists()


def test_holdout_is_stable_and_promo_codes_are_unique(project: Project) -> None:
    campaign = _campaign(project, "win-back")
    first = run_campaign(project, campaign, as_of=AS_OF)
    held = {r["customer_id"] for r in _rows(project, messages, messages.c.status == "holdout")}
    assert first.holdout == len(held)
    assert first.sent + first.holdout == 4
    assert 0 < first.holdout < 4  # 40% of four customers, by a stable hash
    codes = _rows(project, promo_codes)
    assert len(codes) == first.sent
    assert len({c["code"] for c in codes}) == len(codes)
    assert all(c["code"].startswith("BACK-") and c["min_order"] == 40 for c in codes)
    for row in codes:
        eml = (project.outbox_dir / "win-back" / "once" / f"{row['customer_id']}.eml").read_text()
        assert row["code"] in eml
    second = run_campaign(project, campaign, as_of=AS_OF)
    assert second.sent == 0 and second.holdout == 0
    assert second.skipped["held_out_earlier"] == first.holdout
    assert second.skipped["already_sent"] == first.sent
    assert len(_rows(project, promo_codes)) == len(codes)


def test_suppressed_address_is_skipped_with_its_reason(project: Project) -> None:
    ledger = Ledger(project.ledger_url)
    ledger.suppress("ANN@example.com", "unsubscribed", source="test")
    ledger.close()
    summary = run_campaign(project, _campaign(project, "everyone"), as_of=AS_OF)
    assert summary.skipped["unsubscribed"] == 1
    assert summary.sent == 3


def test_holdout_share_is_close_to_the_percentage() -> None:
    from clvflow.planning.plan import in_holdout

    held = sum(in_holdout("win-back", f"C{i}", 10) for i in range(20_000))
    assert 1_800 < held < 2_200
    assert not any(in_holdout("win-back", f"C{i}", 0) for i in range(1000))


def test_promo_codes_export_as_csv(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    from clvflow.cli.main import main

    summary = run_campaign(project, _campaign(project, "win-back"), as_of=AS_OF)
    out = project.root / "codes.csv"
    assert (
        main(
            [
                "promos",
                "export",
                "--campaign",
                "win-back",
                "--out",
                str(out),
                "--project",
                str(project.root),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == summary.sent
    assert {r["code"] for r in rows} == {c["code"] for c in _rows(project, promo_codes)}
    assert all(
        r["discount_percent"] == "15.0" and r["expires_at"].startswith("2026-12-14") for r in rows
    )
