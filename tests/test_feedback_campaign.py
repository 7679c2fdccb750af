"""A feedback-request campaign on the shipped segment and templates (segments/feedback_due.yaml,
the feedback_request templates; prefect.yaml sends them as the post-purchase journey's
review step) on the tiny shop, through the engine: who is asked when, one request per
order, and a later order asked about again."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
import yaml
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.ledger.schema import messages
from clvflow.project.layout import Project
from tests.conftest import ROOT, ProjectFactory, ledger_rows, outbox_email

CAMPAIGN = "feedback-request"


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    deployment = {
        "name": CAMPAIGN,
        "entrypoint": "flows/campaign.py:campaign_flow",
        "parameters": {
            "campaign": CAMPAIGN,
            "spec": {
                "segment": "feedback_due",
                "template": "feedback_request",
                "resend": "per_order",
                "send_window": {"start": "09:00", "end": "20:00"},
            },
        },
    }
    root = make_project(
        {
            "segments/feedback_due.yaml": (ROOT / "segments" / "feedback_due.yaml").read_text(),
            "prefect.yaml": yaml.safe_dump({"deployments": [deployment]}),
        }
    )
    templates = root / "templates"
    for path in (ROOT / "templates").glob("feedback_request*.html.j2"):
        shutil.copy(path, templates / path.name)
    for folder in ("layouts", "partials"):
        shutil.copytree(ROOT / "templates" / folder, templates / folder)
    return Project.load(root)


def _run(project: Project, when: str):  # type: ignore[no-untyped-def]
    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    return run_campaign(project, campaign, as_of=dt.datetime.fromisoformat(when))


def _sent(project: Project) -> list[tuple[str, str]]:
    return ledger_rows(
        project,
        select(messages.c.customer_id, messages.c.occurrence)
        .where(messages.c.status == "sent")
        .order_by(messages.c.id),
    )


def test_asks_about_an_order_placed_10_to_17_days_ago_once(project: Project) -> None:
    # as of Dec 1: C1's latest order O2 (Nov 20) is in the window; C3's (Nov 22) is not yet
    first = _run(project, "2026-12-01T12:00")
    assert (first.members, first.sent) == (1, 1)
    assert _sent(project) == [("C1", "O2")]
    message = outbox_email(project, CAMPAIGN, "O2", "C1")
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Letterpress Thank-You Cards" in html
    assert 'href="https://shop.example/p/letterpress-thank-you"' in html
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # the next days, O2 is still in the window: nobody is asked twice about it
    for day in ("2026-12-02T12:00", "2026-12-03T12:00"):
        again = _run(project, day)
        assert again.sent == 0 and again.skipped["already_sent"] == 1
    # C3 (Nov 22) comes into the window on Dec 2 but gave no marketing consent
    assert _sent(project) == [("C1", "O2")]


def test_a_later_order_gets_its_own_request(project: Project) -> None:
    # C2 ordered on Jun 1, Jul 1 and Aug 1: each order is asked about once, in its window
    for day in ("2026-06-12T12:00", "2026-06-14T12:00", "2026-07-12T12:00", "2026-08-12T12:00"):
        _run(project, day)
    assert _sent(project) == [("C2", "O3"), ("C2", "O4"), ("C2", "O5")]
    hungarian = outbox_email(project, CAMPAIGN, "O4", "C2")
    assert "Béla" in str(hungarian["Subject"]) and "rendelésed" in str(hungarian["Subject"])


def test_no_request_before_ten_days_or_after_seventeen(project: Project) -> None:
    nine_days = _run(project, "2026-11-29T12:00")  # O2 (C1) is 9 days old
    assert nine_days.members == 0
    # O2 is 18 days old; C3's O6 (Nov 22) is in the window, but C3 gave no consent
    later = _run(project, "2026-12-08T12:00")
    assert (later.members, later.sent, later.skipped["no_marketing_consent"]) == (1, 0, 1)
    assert _sent(project) == []
