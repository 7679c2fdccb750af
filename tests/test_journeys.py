"""Journeys on the demo shop, through the engine (no Prefect): the spec's errors name the
deployment and key; the shipped win-back series runs idempotently and sends each step when
it is due, with the entry's own code; and a day-by-day simulation over 70 days, with orders,
code redemptions, clicks and unsubscribes between days, keeps every invariant of the
contract for every customer and step."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import func, select, update

from clvflow.delivery.base import Sender
from clvflow.delivery.senders import open_sender
from clvflow.errors import ConfigError
from clvflow.journeys.catalog import Journey, load_journeys
from clvflow.journeys.run import advance_journey, opened
from clvflow.ledger.schema import journey_entries, messages, promo_codes
from clvflow.ledger.store import Ledger
from clvflow.personalization.promo import redeem
from clvflow.project.layout import Project
from tests.conftest import AS_OF, add_orders, ledger_rows, outbox_email

TIMEZONE = "Europe/Budapest"
CODE = re.compile(r"\b(?:BACK|LAST)-[A-Z0-9]{4}-[A-Z0-9]{4}\b")
FOLLOW_UP = """
  - name: click-follow-up
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: click-follow-up
      spec:
        entry: {segment: top_spenders}
        holdout_percent: 20
        steps:
          - {name: hello, template: vip_thanks}
          - name: nudge
            wait: 2 days
            unless: {clicked: hello}
            template: vip_thanks
"""


def _utc(local: dt.datetime) -> dt.datetime:
    return local.replace(tzinfo=ZoneInfo(TIMEZONE)).astimezone(dt.UTC).replace(tzinfo=None)


def _run(project: Project, name: str, when: dt.datetime) -> dict[str, object]:
    """Run journey ``name`` as of ``when``; its new ledger rows are dated then."""
    return _run_all(project, [name], when)[name]


def _run_all(
    project: Project,
    names: list[str],
    when: dt.datetime,
    sender: Sender | None = None,
    journeys: dict[str, Journey] | None = None,
) -> dict[str, dict[str, object]]:
    """Run the journeys ``names`` as of ``when`` in one workspace (with ``sender``, else the
    configured one); their new ledger rows are dated then (a test's runs all happen today)."""
    journeys = journeys or load_journeys(project.prefect_file)
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            before = con.scalar(select(func.coalesce(func.max(messages.c.id), 0)))
        with opened(project, when, sender=sender) as (ws, at, chosen):
            summaries = {
                name: advance_journey(ws, journeys[name], at, chosen).as_dict() for name in names
            }
        with ledger.engine.begin() as con:
            con.execute(
                update(messages)
                .where(messages.c.id > before)
                .values(planned_at=_utc(when), finished_at=_utc(when))
            )
    finally:
        ledger.close()
    return summaries


def _steps(project: Project, journey: str) -> pd.DataFrame:
    rows = ledger_rows(
        project,
        select(
            messages.c.occurrence,
            messages.c.customer_id,
            messages.c.status,
            messages.c.reason,
            messages.c.finished_at,
        ).where(messages.c.campaign == journey),
    )
    frame = pd.DataFrame(rows, columns=["occurrence", "customer_id", "status", "reason", "at"])
    frame["entry"] = frame["occurrence"].str.rsplit("/", n=1).str[0]
    frame["step"] = frame["occurrence"].str.rsplit("/", n=1).str[1]
    return frame


def _entries(project: Project, journey: str) -> pd.DataFrame:
    rows = ledger_rows(
        project,
        select(
            journey_entries.c.occurrence,
            journey_entries.c.customer_id,
            journey_entries.c.holdout,
            journey_entries.c.entered_at,
            journey_entries.c.exited_at,
            journey_entries.c.exit_reason,
            journey_entries.c.step,
        ).where(journey_entries.c.journey == journey),
    )
    columns = ["entry", "customer_id", "holdout", "entered_at", "exited_at", "reason", "step"]
    return pd.DataFrame(rows, columns=columns)


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


# -- the spec's errors ----------------------------------------------------------------


def _journey_yaml(steps: str, extra: str = "") -> str:
    return f"""deployments:
  - name: broken
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: broken
      spec:
        entry: {{segment: lapsed}}{extra}
        steps:
{steps}"""


@pytest.mark.parametrize(
    ("steps", "extra", "words"),
    [
        (
            "          - {name: a, template: t}\n"
            "          - {name: b, template: t, wait: 1 days, unless: {clicked: c}}\n",
            "",
            ["journey 'broken'", "steps.1.unless.clicked: 'c' is not an earlier step"],
        ),
        (
            "          - {name: a, template: t, wait: 2 days, at: {attribute: wedding_date}}\n",
            "",
            ["journey 'broken'", "either 'wait' or 'at'", "steps[0]"],
        ),
        (
            "          - {name: a, template: t, wiat: 2 days}\n",
            "",
            ["journey 'broken'", "unknown key 'wiat'", "steps[0].wiat"],
        ),
        (
            "          - {name: a, template: t, wait: soon}\n",
            "",
            ["journey 'broken'", "'soon' is not a period", "steps[0].wait"],
        ),
        (
            "          - {name: a, template: t}\n",
            "\n        reentry: per_day",
            ["journey 'broken'", "reentry"],
        ),
    ],
)
def test_spec_errors_name_the_deployment_and_key(
    tmp_path: Path, steps: str, extra: str, words: list[str]
) -> None:
    prefect = tmp_path / "prefect.yaml"
    prefect.write_text(_journey_yaml(steps, extra))
    with pytest.raises(ConfigError) as caught:
        load_journeys(prefect)
    message = caught.value.render()
    for word in words:
        assert word in message, message
    assert caught.value.line is not None and caught.value.line > 4


def test_validate_names_a_journey_step_with_an_unknown_template(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clvflow.cli.main import main

    prefect = demo_project / "prefect.yaml"
    prefect.write_text(prefect.read_text().replace("template: win_back_reminder", "template: nope"))
    assert main(["validate", "--project", str(demo_project), "--as-of", "2026-11-23T10:00"]) == 2
    out = capsys.readouterr().out
    assert "journey 'win-back-series', step 'reminder' uses unknown template 'nope'" in out


# -- the shipped win-back series ------------------------------------------------------


def test_win_back_series_is_idempotent_and_sends_each_step_when_due(demo_project: Path) -> None:
    project = Project.load(demo_project)
    start = AS_OF.replace(hour=10)
    first = _run(project, "win-back-series", start)
    steps = first["steps"]
    assert isinstance(steps, dict)
    assert steps["offer"]["sent"] > 50
    assert steps["reminder"]["sent"] == steps["last-chance"]["sent"] == 0
    again = _run(project, "win-back-series", start)
    assert again["sent"] == 0 and again["entered"] == 0

    later = start + dt.timedelta(days=14)
    _run(project, "win-back-series", later)
    sent = _steps(project, "win-back-series")
    sent = sent[sent["status"] == "sent"]
    entries = _entries(project, "win-back-series")
    new_entries = set(entries.loc[entries["entered_at"] == _utc(later), "entry"])
    at_later = sent[sent["at"] == _utc(later)]
    offers_then = sent[(sent["at"] == _utc(start)) & (sent["step"] == "offer")]
    # at T + 14 days: the reminders of the offers sent 14 days before, offers only to
    # customers who entered at T + 14, nothing else
    assert set(at_later["step"]) <= {"reminder", "offer"}
    assert not at_later[(at_later["step"] == "offer") & ~at_later["entry"].isin(new_entries)].size
    reminded = at_later[at_later["step"] == "reminder"]
    assert len(reminded) > 0
    assert set(reminded["customer_id"]) <= set(offers_then["customer_id"])
    assert (
        Counter(zip(sent["entry"], sent["customer_id"], sent["step"], strict=True)).most_common(1)[
            0
        ][1]
        == 1
    )

    # the reminder shows the offer's code, and every message names its journey and step
    for _, row in reminded.head(10).iterrows():
        offer = outbox_email(project, "win-back-series", f"{row.entry}_offer", row.customer_id)
        reminder = outbox_email(
            project, "win-back-series", f"{row.entry}_reminder", row.customer_id
        )
        codes = {
            kind: set(CODE.findall(msg.get_body(preferencelist=("plain",)).get_content()))
            for kind, msg in (("offer", offer), ("reminder", reminder))
        }
        assert codes["offer"] == codes["reminder"] and len(codes["offer"]) == 1
        assert offer["X-Clvflow-Campaign"] == reminder["X-Clvflow-Campaign"] == "win-back-series"
        assert (offer["X-Clvflow-Step"], reminder["X-Clvflow-Step"]) == ("offer", "reminder")


# -- 70 days, a day at a time ---------------------------------------------------------


def _between_days(project: Project, day: int, when: dt.datetime) -> dict[str, set[str]]:
    """What customers do before the next day's runs: some who got a step order, some use
    their code, some click, some unsubscribe. Returns who did what."""
    ledger = Ledger(project.ledger_url)
    done: dict[str, set[str]] = {"ordered": set(), "redeemed": set(), "unsubscribed": set()}
    try:
        with ledger.engine.connect() as con:
            recent = con.execute(
                select(messages.c.id, messages.c.campaign, messages.c.customer_id,
                       messages.c.email, messages.c.occurrence)
                .where(messages.c.status == "sent", messages.c.finished_at == _utc(when))
                .order_by(messages.c.id)
            ).all()  # fmt: skip
            codes = con.execute(
                select(promo_codes.c.code, promo_codes.c.customer_id).where(
                    promo_codes.c.expires_at >= when + dt.timedelta(days=1),
                    promo_codes.c.redeemed_at.is_(None),
                )
            ).all()
        orders = []
        for index, (mid, campaign, cid, address, _occ) in enumerate(recent):
            pick = (index + day) % 9
            if pick == 0:
                orders.append((str(cid), when + dt.timedelta(hours=3), 80.0))
                done["ordered"].add(str(cid))
            elif pick == 1:
                ledger.add_events(
                    [{"event_id": f"click-{mid}", "event": "click", "email": address,
                      "message_id": mid, "campaign": campaign, "customer_id": cid,
                      "occurred_at": when + dt.timedelta(hours=1)}]
                )  # fmt: skip
            elif pick == 2 and day % 4 == 0:
                ledger.suppress(str(address), "unsubscribed", "test", str(cid))
                done["unsubscribed"].add(str(cid))
        for index, (code, cid) in enumerate(codes):
            if index % 7 == day % 7:
                redeem(ledger.engine, str(code), 100.0, when + dt.timedelta(hours=2))
                done["redeemed"].add(str(cid))
        add_orders(project, orders, "SIM")
    finally:
        ledger.close()
    return done


@pytest.fixture
def small_shop(demo_project: Path) -> Path:
    """The demo project on a smaller generated shop (the simulation runs 220 times)."""
    from clvflow.demo.shop import ShopSize, generate_shop

    shutil.rmtree(demo_project / "data")
    generate_shop(demo_project / "data", reference=AS_OF.date(), seed=11, size=ShopSize(400, 1600))
    return demo_project


def _check_invariants(
    project: Project, journey: Journey, unsubscribed: dict[str, dt.datetime]
) -> None:
    """The contract's invariants for every entry and step of ``journey``."""
    spec = journey.spec
    name = journey.name
    order = [s.name for s in spec.steps]
    steps = _steps(project, name)
    entries = _entries(project, name)
    assert len(entries) > 0, name
    key = ["entry", "customer_id"]
    merged = steps.merge(entries, on=key, how="left", suffixes=("", "_entry"))
    # every step message belongs to an entry; nothing to the holdout
    assert merged["holdout"].notna().all(), name
    assert (merged["holdout"] == 0).all(), name
    # nothing twice per entry and step
    assert not steps.duplicated([*key, "step"]).any(), name
    # skips carry their reason
    skipped = steps[steps["status"] == "skipped"]
    assert skipped["reason"].isin(["where", "unless", "expired", "missing_date"]).all()
    # nothing after the exit
    exited = merged[merged["exited_at"].notna()]
    assert (exited["at"] <= exited["exited_at"]).all(), name
    # step k only after step k-1, at least its wait later
    for (_, _), path in merged.groupby(key):
        got = {str(s): t for s, t in zip(path["step"], path["at"], strict=True)}
        indexes = sorted(order.index(s) for s in got)
        assert indexes == list(range(len(indexes))), (name, got)
        for k in indexes[1:]:
            step = spec.steps[k]
            if step.wait:
                assert got[order[k]] >= got[order[k - 1]] + step.wait_period, (name, got)
    # after an unsubscribe, nothing more was sent
    sent = steps[steps["status"] == "sent"]
    late = [
        (cid, at)
        for cid, at in zip(sent["customer_id"], sent["at"], strict=True)
        if cid in unsubscribed and at > _utc(unsubscribed[cid])
    ]
    assert not late, (name, late[:3])


@pytest.mark.slow
def test_seventy_days_keep_every_invariant(small_shop: Path) -> None:
    demo_project = small_shop
    prefect = demo_project / "prefect.yaml"
    prefect.write_text(prefect.read_text().rstrip("\n") + "\n" + FOLLOW_UP)
    project = Project.load(demo_project)
    journeys = load_journeys(project.prefect_file)
    names = ["win-back-series", "post-purchase", "click-follow-up", "wedding"]
    # 15:30 in Budapest is inside the send window in every time zone of the shop (London,
    # New York, Moscow): what is due goes the same day
    start = AS_OF.replace(hour=15, minute=30) - dt.timedelta(days=60)
    unsubscribed: dict[str, dt.datetime] = {}
    outbox = open_sender(project)  # one for the 70 days: it writes its index as it closes
    for day in range(70):
        when = start + dt.timedelta(days=day)
        # the wedding's steps are months apart: it runs once a week
        today = [n for n in names if n != "wedding" or day % 7 == 0]
        _run_all(project, today, when, outbox, journeys)
        done = _between_days(project, day, when)
        for cid in done["unsubscribed"]:
            unsubscribed.setdefault(cid, when)
    outbox.close()

    for name in names:
        _check_invariants(project, journeys[name], unsubscribed)

    # the series did what it is for: reminders and last chances, skips and exits by reason
    steps = _steps(project, "win-back-series")
    entries = _entries(project, "win-back-series")
    assert {"offer", "reminder", "last-chance"} <= set(steps.loc[steps["status"] == "sent", "step"])
    assert "where" in set(steps["reason"].dropna())
    assert {"ordered", "holdout", "completed"} <= set(entries["reason"].dropna())
    # every reminder shows the code of its entry's offer
    reminders = steps[(steps["status"] == "sent") & (steps["step"] == "reminder")]
    assert len(reminders) > 0
    for entry, cid in zip(reminders["entry"], reminders["customer_id"], strict=True):
        codes = [
            set(CODE.findall(_text(outbox_email(project, "win-back-series", f"{entry}_{s}", cid))))
            for s in ("offer", "reminder")
        ]
        assert codes[0] == codes[1] and len(codes[0]) == 1, (entry, cid, codes)
    follow = _steps(project, "click-follow-up")
    assert "unless" in set(follow["reason"].dropna())
    assert (_steps(project, "post-purchase")["step"] == "review").any()


# -- two processes on one PostgreSQL ledger -------------------------------------------

RACE = """
import datetime as dt, sys
from pathlib import Path
from clvflow.journeys.catalog import Journey, load_journeys
from clvflow.journeys.run import run_journey
from clvflow.project.layout import Project
project = Project.load(Path(sys.argv[1]))
journey = load_journeys(project.prefect_file)["win-back-series"]
run_journey(project, journey, as_of=dt.datetime.fromisoformat(sys.argv[2]))
"""


@pytest.mark.slow
def test_two_processes_advancing_one_journey_send_each_step_once(
    demo_project: Path, pg_ledger: str
) -> None:
    import subprocess
    import sys

    project = Project.load(demo_project)
    assert project.ledger_url == pg_ledger
    for days in (0, 14):
        when = (AS_OF.replace(hour=10) + dt.timedelta(days=days)).isoformat()
        racers = [
            subprocess.Popen([sys.executable, "-c", RACE, str(demo_project), when])
            for _ in range(2)
        ]
        assert [p.wait(timeout=300) for p in racers] == [0, 0]
    steps = _steps(project, "win-back-series")
    entries = _entries(project, "win-back-series")
    sent = steps[steps["status"] == "sent"]
    assert not steps.duplicated(["entry", "customer_id", "step"]).any()
    # nothing lost: every entry that is not held out got its offer, and every entry that
    # went on got its reminder; each message is in the outbox once
    going = entries[entries["holdout"] == 0]
    offered = set(sent.loc[sent["step"] == "offer", "customer_id"])
    consent = set(going["customer_id"]) - set(going.loc[going["reason"].notna(), "customer_id"])
    assert consent <= offered | set(entries.loc[entries["step"] == 0, "customer_id"])
    assert (sent["step"] == "reminder").sum() > 0
    files = list((demo_project / "outbox" / "win-back-series").rglob("*.eml"))
    assert len(files) == len(sent)


def test_journeys_show_counts_each_step_and_one_customers_path(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from clvflow.cli.main import main

    project = Project.load(demo_project)
    start = AS_OF.replace(hour=10)
    _run(project, "win-back-series", start)
    sent = _steps(project, "win-back-series")
    offered = sorted(sent.loc[sent["status"] == "sent", "customer_id"])
    # one recipient orders two days after the offer: a conversion of the offer
    add_orders(project, [(offered[0], start + dt.timedelta(days=2), 90.0)], "SHOW")
    capsys.readouterr()
    assert (
        main(["journeys", "show", "win-back-series", "--json", "--project", str(demo_project)]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    steps = {row["step"]: row for row in shown["steps"]}
    assert steps["offer"]["sent"] == len(offered) and steps["offer"]["converted"] == 1
    assert steps["reminder"]["waiting"] == len(offered)  # each waits for its reminder
    entries = _entries(project, "win-back-series")
    assert shown["entries"] == len(entries) and shown["holdout"] == int(entries["holdout"].sum())

    assert main(["journeys", "show", "win-back-series", "--customer", offered[0],
                 "--project", str(demo_project)]) == 0  # fmt: skip
    path = capsys.readouterr().out
    assert "offer" in path and "sent" in path and "still going" in path
    assert main(["journeys", "list", "--project", str(demo_project)]) == 0
    assert "win-back-series" in capsys.readouterr().out
