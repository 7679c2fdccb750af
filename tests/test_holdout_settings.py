"""The holdout share: clvflow.yaml's ``measurement.holdout_percent`` for every campaign and
journey, a spec's own ``holdout_percent`` winning (0: none), never for transactional mail;
who is held out follows the stable rule (per order for per-order journeys), and an
``every: N days`` campaign holds a customer out as often as it sends to one. Real runs on
a small generated shop and a real SQLite ledger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.cli.main import main
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.ledger.schema import journey_entries, messages
from clvflow.measurement.settings import MeasurementConfig
from clvflow.planning.holdout import in_holdout
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.layout import Project
from tests.conftest import AS_OF, BASE_CONFIG, ProjectFactory, ledger_rows

CUSTOMERS = 200
DEFAULT = 30
CONFIG = BASE_CONFIG + f"measurement:\n  holdout_percent: {DEFAULT}\n"

MARKETING = """\
---
subject: "Hello {{ customer.first_name }}"
---
<p>Hello {{ customer.first_name }}.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</p>
"""
RECEIPT = MARKETING.replace("---\n<p>", "kind: transactional\n---\n<p>", 1)

PREFECT = """\
deployments:
  - name: defaulted
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: defaulted
      spec: {segment: everyone, template: hello}
  - name: own-share
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: own-share
      spec: {segment: everyone, template: hello, holdout_percent: 10}
  - name: no-holdout
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: no-holdout
      spec: {segment: everyone, template: hello, holdout_percent: 0}
  - name: receipt
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: receipt
      spec: {segment: everyone, template: receipt}
  - name: monthly
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: monthly
      spec: {segment: everyone, template: hello, resend: {every: 30 days}}
  - name: series
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: series
      spec:
        entry: {segment: everyone}
        steps: [{name: hello, template: hello}]
  - name: after-order
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: after-order
      spec:
        entry: {event: shop.order.placed, within: 3 days}
        reentry: per_order
        exit: {on_order: false}
        steps: [{name: thanks, template: hello}]
"""


def write_shop(root: Path) -> None:
    """CUSTOMERS customers who all may get marketing, each with two orders in the day
    before AS_OF (the order-placed journey enters both)."""
    ids = [f"C{i:03d}" for i in range(1, CUSTOMERS + 1)]
    customers = ["customer_id,email,first_name,locale,accepts_marketing"]
    customers += [f"{c},{c.lower()}@example.com,Name{c},{'en' if i % 3 else 'hu'},true"
                  for i, c in enumerate(ids)]  # fmt: skip
    orders = ["order_id,customer_id,placed_at,total,currency"]
    for i, c in enumerate(ids):
        for k, hours in enumerate((20, 5)):
            at = AS_OF - dt.timedelta(hours=hours, minutes=i % 50)
            orders.append(f"O{2 * i + k:05d},{c},{at:%Y-%m-%d %H:%M:%S},{30 + i % 40}.00,EUR")
    (root / "data" / "customers.csv").write_text("\n".join(customers) + "\n")
    (root / "data" / "orders.csv").write_text("\n".join(orders) + "\n")
    (root / "data" / "order_items.csv").write_text("order_id,product_id,quantity,unit_price\n")


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    root = make_project(
        {
            "segments/everyone.yaml": "description: all\nwhere:\n  customer_id: {is_set: true}\n",
            "templates/hello.html.j2": MARKETING,
            "templates/receipt.html.j2": RECEIPT,
            "prefect.yaml": PREFECT,
        },
        config=CONFIG,
    )
    write_shop(root)
    return Project.load(root)


def _statuses(project: Project, campaign: str) -> dict[str, str]:
    rows = ledger_rows(
        project,
        select(messages.c.customer_id, messages.c.status).where(messages.c.campaign == campaign),
    )
    return {str(c): str(s) for c, s in rows}


def _rule(campaign: str, percent: float) -> set[str]:
    return {
        f"C{i:03d}" for i in range(1, CUSTOMERS + 1) if in_holdout(campaign, f"C{i:03d}", percent)
    }


def test_the_setting_resolves_default_override_zero_and_transactional() -> None:
    config = MeasurementConfig(holdout_percent=DEFAULT)
    unset = CampaignSpec(segment="s", template="t")
    own = CampaignSpec(segment="s", template="t", holdout_percent=12.5)
    zero = CampaignSpec(segment="s", template="t", holdout_percent=0)
    assert config.holdout_for(unset, transactional=False) == DEFAULT
    assert config.holdout_for(own, transactional=False) == 12.5
    assert config.holdout_for(zero, transactional=False) == 0
    assert config.holdout_for(own, transactional=True) == 0
    assert MeasurementConfig().holdout_for(unset, transactional=False) == 0  # unset: none


@pytest.mark.parametrize(
    ("campaign", "percent"),
    [("defaulted", DEFAULT), ("own-share", 10), ("no-holdout", 0), ("receipt", 0)],
)
def test_a_run_holds_out_the_resolved_share_by_the_stable_rule(
    project: Project, campaign: str, percent: float
) -> None:
    summary = run_campaign(project, load_campaigns(project.prefect_file)[campaign], as_of=AS_OF)
    statuses = _statuses(project, campaign)
    held = {c for c, s in statuses.items() if s == "holdout"}
    assert held == _rule(campaign, percent)
    assert summary.holdout == len(held) and summary.sent == CUSTOMERS - len(held)
    if percent:
        assert 0.5 * percent < 100 * len(held) / CUSTOMERS < 1.5 * percent


def test_a_holdout_on_transactional_mail_fails_validation(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    prefect = project.prefect_file
    prefect.write_text(
        prefect.read_text().replace(
            "spec: {segment: everyone, template: receipt}",
            "spec: {segment: everyone, template: receipt, holdout_percent: 10}",
        )
    )
    assert main(["validate", "--project", str(project.root), "--as-of", str(AS_OF)]) == 2
    out = capsys.readouterr().out
    assert "'receipt' sends the transactional template 'receipt'" in out
    assert "holdout_percent" in out and "prefect.yaml" in out


def _entries(project: Project, journey: str) -> list[tuple[str, str, int]]:
    stmt = select(
        journey_entries.c.customer_id, journey_entries.c.occurrence, journey_entries.c.holdout
    ).where(journey_entries.c.journey == journey)
    return [(str(c), str(o), int(h)) for c, o, h in ledger_rows(project, stmt)]


def test_journeys_hold_out_entries_by_default_and_a_per_order_one_each_order(
    project: Project,
) -> None:
    journeys = load_journeys(project.prefect_file)
    run_journey(project, journeys["series"], as_of=AS_OF)
    run_journey(project, journeys["after-order"], as_of=AS_OF)
    series = _entries(project, "series")
    assert len(series) == CUSTOMERS
    assert {c for c, _, h in series if h} == _rule("series", DEFAULT)
    orders = _entries(project, "after-order")
    assert len(orders) == 2 * CUSTOMERS
    for customer, order, held in orders:
        assert held == in_holdout("after-order", customer, DEFAULT, order)
    sides: dict[str, set[int]] = {}
    for customer, _, held in orders:
        sides.setdefault(customer, set()).add(held)
    assert any(both == {0, 1} for both in sides.values())  # one order held, the other not
    sent = _statuses(project, "series")
    assert set(sent.values()) == {"sent"}  # a step never holds out on its own
    assert set(sent) == {c for c, _, h in series if not h}


def test_every_n_days_holds_out_as_often_as_it_sends(project: Project) -> None:
    monthly = load_campaigns(project.prefect_file)["monthly"]
    first = run_campaign(project, monthly, as_of=AS_OF)
    again = run_campaign(project, monthly, as_of=AS_OF + dt.timedelta(days=1))
    assert first.holdout > 0 and first.sent > 0
    assert (again.sent, again.holdout) == (0, 0)
    assert again.skipped["held_out_earlier"] == first.holdout
    assert again.skipped["already_sent"] == first.sent
    later = run_campaign(project, monthly, as_of=AS_OF + dt.timedelta(days=31))
    assert (later.sent, later.holdout) == (first.sent, first.holdout)
