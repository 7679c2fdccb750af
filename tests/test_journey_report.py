"""The report's journey sections on the demo shop: the shipped `win-back-series` journey run
at AS_OF, 14 and 19 days later (offer, reminder, last chance), with orders placed after the
sends by hand, so each step's conversions and the uplift against the holdout are known."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.ledger.schema import journey_entries, messages
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.reporting.html import render_html
from clvflow.reporting.markdown import campaigns_markdown
from tests.conftest import AS_OF, add_orders, ledger_rows

JOURNEY = "win-back-series"
TIMEZONE = "Europe/Budapest"
SINCE = AS_OF - dt.timedelta(days=1)
UNTIL = AS_OF + dt.timedelta(days=30)


def _days(days: float) -> dt.datetime:
    return AS_OF + dt.timedelta(days=days)


def _run(project: Project, days: int) -> None:
    """Run the journey at AS_OF + ``days``, and date the run's ledger rows then (the run
    writes the clock's time; the test's runs happen on one day)."""
    when = _days(days)
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            before = con.scalar(select(func.coalesce(func.max(messages.c.id), 0)))
        run_journey(project, load_journeys(project.prefect_file)[JOURNEY], as_of=when)
        utc = when.replace(tzinfo=ZoneInfo(TIMEZONE)).astimezone(dt.UTC).replace(tzinfo=None)
        with ledger.engine.begin() as con:
            con.execute(
                update(messages)
                .where(messages.c.id > before)
                .values(planned_at=utc, finished_at=utc)
            )
    finally:
        ledger.close()


def _recipients(project: Project, step: str) -> list[str]:
    rows = ledger_rows(
        project,
        select(messages.c.customer_id).where(
            messages.c.campaign == JOURNEY,
            messages.c.status == "sent",
            messages.c.occurrence.endswith(f"/{step}"),
        ),
    )
    return sorted(str(r[0]) for r in rows)


def _section(markdown: str, journey: str) -> str:
    start = markdown.index(f"### {journey}\n")
    end = markdown.find("\n### ", start + 1)
    return markdown[start : end if end >= 0 else len(markdown)]


def _table(section: str) -> dict[str, dict[str, str]]:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    keys = [k.strip() for k in lines[0].strip("|").split("|")]
    rows = [dict(zip(keys, (v.strip() for v in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]  # fmt: skip
    return {row["step"]: row for row in rows}


@pytest.fixture
def journeyed(demo_project: Path) -> tuple[Project, dict[str, str]]:
    """The demo project after the three runs, with hand-placed orders; returns who bought:
    ``offer`` (2 days after the offer), ``late`` (10 days after the offer: outside its
    7-day window, before the reminder), ``held`` (a holdout entry, 3 days after entering),
    ``reminder`` (2 days after the reminder) and ``last`` (a day after the last chance,
    which is also within their reminder's window: the later step gets it)."""
    project = Project.load(demo_project)
    _run(project, 0)
    offered = _recipients(project, "offer")
    held = sorted(
        str(r[0])
        for r in ledger_rows(
            project,
            select(journey_entries.c.customer_id).where(
                journey_entries.c.journey == JOURNEY, journey_entries.c.holdout == 1
            ),
        )
    )
    assert len(offered) >= 3 and held
    buyers = {"offer": offered[0], "late": offered[1], "held": held[0]}
    add_orders(
        project,
        [(buyers["offer"], _days(2), 50.0), (buyers["late"], _days(10), 30.0),
         (buyers["held"], _days(3), 40.0)],
    )  # fmt: skip
    _run(project, 14)
    reminded = [c for c in _recipients(project, "reminder") if c not in buyers.values()]
    assert reminded
    buyers["reminder"] = reminded[0]
    add_orders(project, [(buyers["reminder"], _days(16), 25.0)])
    _run(project, 19)
    last = [c for c in _recipients(project, "last-chance") if c not in buyers.values()]
    assert last
    buyers["last"] = last[0]
    add_orders(project, [(buyers["last"], _days(20), 60.0)])
    return project, buyers


def test_journey_section_counts_steps_and_uplift(
    journeyed: tuple[Project, dict[str, str]],
) -> None:
    from clvflow.reporting.report import build_report

    project, buyers = journeyed
    report = build_report(project, SINCE, UNTIL)
    markdown = campaigns_markdown(report)
    section = _section(markdown, JOURNEY)
    steps = _table(section)
    assert list(steps) == ["offer", "reminder", "last-chance"]

    # recipients are the ledger's sent messages of each step
    for step, row in steps.items():
        assert int(row["recipients"]) == len(_recipients(project, step)) > 0

    # conversions within 7 days of each step's send, each order once, for the later step
    assert (steps["offer"]["conversions"], steps["offer"]["revenue"]) == ("1", "50.00 EUR")
    assert (steps["reminder"]["conversions"], steps["reminder"]["revenue"]) == ("1", "25.00 EUR")
    last = steps["last-chance"]
    assert (last["conversions"], last["orders"], last["revenue"]) == ("1", "1", "60.00 EUR")
    # the buyers who ordered got no later step (the journey exits on an order)
    assert buyers["offer"] not in _recipients(project, "reminder")
    assert buyers["reminder"] not in _recipients(project, "last-chance")

    # the last chance goes only to the top 30 % by CLV: the rest are skipped with 'where'
    skipped = ledger_rows(
        project,
        select(func.count()).where(
            messages.c.campaign == JOURNEY,
            messages.c.status == "skipped",
            messages.c.reason == "where",
        ),
    )[0][0]
    assert skipped > 0 and last["skipped"] == f"where {skipped}"

    # uplift: every entry not held out against the holdout, orders within 26 days (the
    # waits 14 + 5 plus 7 days) after entering: four treated buyers, one held out
    entries = Counter(
        int(h)
        for (h,) in ledger_rows(
            project, select(journey_entries.c.holdout).where(journey_entries.c.journey == JOURNEY)
        )
    )
    uplift = next(line for line in section.splitlines() if line.startswith("Uplift"))
    assert f"treated {entries[0]} entries, 4 converted" in uplift
    assert f"holdout {entries[1]} entries, 1 converted" in uplift
    assert "within 26 days of entering" in section
    assert "Conversion uplift (95% CI) " in uplift and " pp [" in uplift
    assert "revenue uplift per entry (95% CI) " in uplift

    # the journey is not a campaign of the campaigns' sections
    campaigns_part = markdown[: markdown.index("## Journeys")]
    assert JOURNEY not in campaigns_part
    # a journey without a holdout says so
    assert "No holdout" in _section(markdown, "post-purchase")

    page = render_html(report)
    assert "<h2>Journeys</h2>" in page and f"<h3>{JOURNEY}</h3>" in page
    journeys_part = page[page.index("<h2>Journeys</h2>") :]
    assert "Conversion uplift (95% CI)" in journeys_part
    assert JOURNEY not in page[: page.index("<h2>Journeys</h2>")]


def test_the_period_bounds_the_entries_and_steps(
    journeyed: tuple[Project, dict[str, str]],
) -> None:
    from clvflow.reporting.report import measure_campaigns

    project, _ = journeyed
    # from 13 days on: neither the first run's entries nor its offers, only later steps
    later = measure_campaigns(project, _days(13), UNTIL)
    (result,) = [j for j in later.journeys if j.journey == JOURNEY]
    entered_later = ledger_rows(
        project,
        select(func.count()).where(
            journey_entries.c.journey == JOURNEY, journey_entries.c.entered_at > _days(1)
        ),
    )[0][0]
    assert result.treated.recipients + result.holdout.recipients == entered_later
    offers = {s.step: s for s in result.steps}["offer"]
    assert offers.recipients == len(_recipients(project, "offer")) - len(
        ledger_rows(
            project,
            select(messages.c.id).where(
                messages.c.campaign == JOURNEY,
                messages.c.status == "sent",
                messages.c.occurrence.endswith("/offer"),
                messages.c.planned_at < _days(1),
            ),
        )
    )
    assert offers.conversions == 0  # the offer's buyer was offered at AS_OF
