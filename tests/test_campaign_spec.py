"""Campaign parameters without Prefect: A/B variants (stable, weighted, recorded, one
template each), the send window in the customer's time zone, the attribution window,
and `clvflow validate` on deployments."""

from __future__ import annotations

import datetime as dt
import email
from collections import Counter
from email import policy
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.cli.main import main
from clvflow.ledger.schema import messages, skips
from clvflow.ledger.store import Ledger
from clvflow.planning.plan import in_holdout
from clvflow.planning.variants import assign_variants, unit_hash
from clvflow.planning.window import outside_window
from clvflow.project.campaign_spec import CampaignSpec, SendWindow, Variant
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ProjectFactory
from tests.test_campaign_run import TEMPLATE

B_TEMPLATE = TEMPLATE.replace('subject: "Hello', 'subject: "Hi there')

AB_YAML = """\
deployments:
  - name: ab
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: ab
      spec:
        segment: everyone
        template: hello
        variants:
          - {name: A, template: hello, weight: 1}
          - {name: B, template: hello_b, weight: 1}
"""

FILES = {
    "segments/everyone.yaml": "description: all\nwhere:\n  customer_id: {is_set: true}\n",
    "templates/hello.html.j2": TEMPLATE,
    "templates/hello_b.html.j2": B_TEMPLATE,
    "prefect.yaml": AB_YAML,
}


def _ledger_rows(project: Project, table):  # type: ignore[no-untyped-def]
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            return [dict(r) for r in con.execute(select(table)).mappings()]
    finally:
        ledger.close()


def test_spec_defaults_and_strictness() -> None:
    spec = CampaignSpec(segment="s", template="t")
    assert spec.attribution_days == 5 and spec.variants == [] and spec.send_window is None
    assert spec.templates == ["t"] and spec.workers == 1
    with pytest.raises(ValidationError, match="extra"):
        CampaignSpec.model_validate({"segment": "s", "template": "t", "colour": "red"})
    with pytest.raises(ValidationError, match="one variant is no A/B test"):
        CampaignSpec(segment="s", template="t", variants=[Variant(name="A", template="t")])
    with pytest.raises(ValidationError, match="variant names must differ"):
        CampaignSpec.model_validate(
            {"segment": "s", "template": "t",
             "variants": [{"name": "A", "template": "a"}, {"name": "A", "template": "b"}]}
        )  # fmt: skip
    with pytest.raises(ValidationError, match="time of day"):
        SendWindow(start="9am", end="20:00")
    with pytest.raises(ValidationError, match="never open"):
        SendWindow(start="09:00", end="09:00")
    with pytest.raises(ValidationError):
        CampaignSpec(segment="s", template="t", attribution_days=0)


@pytest.mark.parametrize(
    ("start", "end", "clock", "inside"),
    [
        ("09:00", "20:00", "09:00", True),
        ("09:00", "20:00", "19:59", True),
        ("09:00", "20:00", "20:00", False),
        ("09:00", "20:00", "08:59", False),
        ("22:00", "06:00", "23:30", True),  # spans midnight
        ("22:00", "06:00", "05:59", True),
        ("22:00", "06:00", "06:00", False),
        ("22:00", "06:00", "12:00", False),
    ],
)
def test_send_window_contains(start: str, end: str, clock: str, inside: bool) -> None:
    h, m = map(int, clock.split(":"))
    assert SendWindow(start=start, end=end).contains(dt.time(h, m)) is inside


def test_window_uses_each_customers_time_zone() -> None:
    # 2026-11-23 10:00 in Budapest (UTC+1) = 09:00 UTC = 04:00 New York = 18:00 Tokyo.
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "timezone": ["Europe/Budapest", "America/New_York", "Asia/Tokyo", None, "Mars/Base"],
        }
    )
    window = SendWindow(start="08:00", end="17:00")
    late = outside_window(frame, window, dt.datetime(2026, 11, 23, 10, 0), "Europe/Budapest")
    # no zone or an unknown one: the shop's (10:00, inside)
    assert late.tolist() == [False, True, True, False, False]
    assert not outside_window(frame, None, AS_OF, "Europe/Budapest").any()


def test_variant_assignment_is_stable_weighted_and_independent_of_holdout() -> None:
    variants = [Variant(name="A", template="a", weight=3), Variant(name="B", template="b")]
    ids = [f"C{i}" for i in range(20_000)]
    first = assign_variants("spring", ids, variants)
    assert first == assign_variants("spring", ids, variants)
    counts = Counter(first)
    assert 14_600 < counts["A"] < 15_400 and counts["A"] + counts["B"] == 20_000
    # another campaign shuffles customers differently
    other = assign_variants("autumn", ids, variants)
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 5_000
    # the variant split does not follow the holdout split: ~75% A inside the holdout too
    held = [v for cid, v in zip(ids, first, strict=True) if in_holdout("spring", cid, 20)]
    assert 0.70 < held.count("A") / len(held) < 0.80
    # an independent reading of the rule: the A share is the first 3/4 of the unit interval
    for cid, v in zip(ids[:500], first[:500], strict=True):
        assert v == ("A" if unit_hash("spring", cid, "variant") < 0.75 else "B")


def test_ab_run_records_variant_and_sends_each_variants_template(
    make_project: ProjectFactory,
) -> None:
    project = Project.load(make_project(FILES))
    campaign = load_campaigns(project.prefect_file)["ab"]
    summary = run_campaign(project, campaign, as_of=AS_OF)
    assert summary.sent == 4
    rows = {r["customer_id"]: r for r in _ledger_rows(project, messages)}
    expected = dict(
        zip(["C1", "C2", "C4", "C5"], assign_variants("ab", ["C1", "C2", "C4", "C5"],
            campaign.spec.variants), strict=True)
    )  # fmt: skip
    assert {c: r["variant"] for c, r in rows.items()} == expected
    assert {c: r["template"] for c, r in rows.items()} == {
        c: ("hello" if v == "A" else "hello_b") for c, v in expected.items()
    }
    assert dict(summary.by_variant) == dict(Counter(expected.values()))
    for cid, variant in expected.items():
        eml = project.outbox_dir / "ab" / "once" / f"{cid}.eml"
        msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert msg["X-Clvflow-Variant"] == variant
        assert msg["Subject"].startswith("Hello" if variant == "A" else "Hi there")


WINDOW_CUSTOMERS = """\
customer_id,email,first_name,locale,timezone,accepts_marketing
C1,ann@example.com,Ann,en,Europe/Budapest,true
C2,bela@example.com,Béla,hu,America/New_York,true
C3,cyril@example.com,Cyril,ru,Asia/Tokyo,true
"""


def test_outside_the_window_waits_and_goes_out_in_a_later_run(
    make_project: ProjectFactory,
) -> None:
    yaml = AB_YAML.replace("name: ab", "name: w").replace("campaign: ab", "campaign: w")
    yaml = (
        yaml.split("        variants:")[0] + '        send_window: {start: "08:00", end: "17:00"}\n'
    )
    root = make_project({**FILES, "prefect.yaml": yaml, "data/customers.csv": WINDOW_CUSTOMERS})
    project = Project.load(root)
    campaign = load_campaigns(project.prefect_file)["w"]
    # 10:00 Budapest: 04:00 in New York (too early), 18:00 in Tokyo (too late)
    first = run_campaign(project, campaign, as_of=dt.datetime(2026, 11, 23, 10, 0))
    assert (first.sent, first.waiting) == (1, 2)
    assert {r["customer_id"] for r in _ledger_rows(project, messages)} == {"C1"}
    waited = {(r["customer_id"], r["reason"]) for r in _ledger_rows(project, skips)}
    assert waited == {("C2", "outside_send_window"), ("C3", "outside_send_window")}
    # 15:00 Budapest: 09:00 in New York (open), 23:00 in Tokyo (closed); C1 already has it
    second = run_campaign(project, campaign, as_of=dt.datetime(2026, 11, 23, 15, 0))
    assert (second.sent, second.waiting, second.skipped["already_sent"]) == (1, 1, 1)
    # 01:00 Budapest next day: 09:00 in Tokyo
    third = run_campaign(project, campaign, as_of=dt.datetime(2026, 11, 24, 1, 0))
    assert (third.sent, third.waiting) == (1, 0)
    sent = [r["customer_id"] for r in _ledger_rows(project, messages) if r["status"] == "sent"]
    assert sorted(sent) == ["C1", "C2", "C3"]


def test_validate_checks_variant_templates_and_entrypoints(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefect = demo_project / "prefect.yaml"
    text = prefect.read_text().replace(
        "        template: vip_thanks\n",
        "        template: vip_thanks\n        variants:\n"
        "          - {name: A, template: vip_thanks}\n"
        "          - {name: B, template: vip_thanx}\n",
    )
    text = text.replace("flows/suppressions.py:suppression_sync_flow", "flows/nothere.py:sync")
    prefect.write_text(text)
    assert main(["validate", "--project", str(demo_project), "--as-of", "2026-11-23T10:00"]) == 2
    out = capsys.readouterr().out
    assert "campaign 'vip-thanks' uses unknown template 'vip_thanx'" in out
    assert "prefect.yaml" in out


def test_validate_rejects_a_bad_entrypoint_and_cron(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefect = demo_project / "prefect.yaml"
    text = prefect.read_text().replace(
        "entrypoint: flows/campaign.py:campaign_flow",
        "entrypoint: flows/campaign.py:campain_flow",
        1,
    )
    text = text.replace('cron: "0 11 1 */3 *"', 'cron: "every monday"')
    prefect.write_text(text)
    assert main(["validate", "--project", str(demo_project), "--as-of", "2026-11-23T10:00"]) == 2
    out = capsys.readouterr().out
    assert "'flows/campaign.py' defines no 'campain_flow'" in out
    assert "'every monday' is not a cron expression" in out


@pytest.mark.parametrize(
    ("as_of", "zone", "expected_utc"),
    [
        # 10:00 Budapest (09:00 UTC) = 04:00 New York (EST, UTC-5): opens 08:00 NY = 13:00 UTC
        (dt.datetime(2026, 11, 23, 10, 0), "America/New_York", dt.datetime(2026, 11, 23, 13, 0)),
        # 10:00 Budapest = 18:00 Tokyo (UTC+9): opens tomorrow 08:00 Tokyo = 23:00 UTC today
        (dt.datetime(2026, 11, 23, 10, 0), "Asia/Tokyo", dt.datetime(2026, 11, 23, 23, 0)),
        # no zone: the shop's; 07:00 Budapest → 08:00 Budapest = 07:00 UTC
        (dt.datetime(2026, 11, 23, 7, 0), None, dt.datetime(2026, 11, 23, 7, 0)),
        # exactly at the opening: the next day's (the window is open now, nothing waits)
        (dt.datetime(2026, 11, 23, 8, 0), "Europe/Budapest", dt.datetime(2026, 11, 24, 7, 0)),
        # across the spring DST change in Budapest (29 March 2026: UTC+1 → UTC+2)
        (dt.datetime(2026, 3, 28, 21, 0), "Europe/Budapest", dt.datetime(2026, 3, 29, 6, 0)),
    ],
)
def test_next_window_opening(
    as_of: dt.datetime, zone: str | None, expected_utc: dt.datetime
) -> None:
    from clvflow.planning.window import next_opening

    window = SendWindow(start="08:00", end="17:00")
    got = next_opening(window, as_of, "Europe/Budapest", zone)
    assert got == expected_utc.replace(tzinfo=dt.UTC)
