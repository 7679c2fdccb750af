"""A run's messages are dated on its clock: ``--as-of`` (in UTC) plus the time the run
took. A run dated in the past records its messages, skips and journey steps then, so the
report measures them from then; a run as of now records the wall clock."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.ledger.database import utcnow
from clvflow.ledger.schema import messages, skips
from clvflow.pipeline.job import Job
from clvflow.planning.plan import ledger_time
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.layout import Project
from tests.conftest import ProjectFactory, ledger_rows
from tests.test_campaign_run import FILES

PAST = dt.datetime(2026, 3, 2, 10, 0)  # Budapest in winter: 09:00 UTC
TOOK = dt.timedelta(minutes=5)  # far more than a run of six customers takes
JOURNEY = """
  - name: welcome
    entrypoint: flows/journey.py:journey_flow
    parameters:
      campaign: welcome
      spec:
        entry: {segment: everyone}
        steps: [{name: hello, template: hello}]
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    files = {**FILES, "prefect.yaml": FILES["prefect.yaml"] + JOURNEY}
    return Project.load(make_project(files))


def _in_run(moment: object, start: dt.datetime) -> bool:
    return isinstance(moment, dt.datetime) and start <= moment <= start + TOOK


def test_a_past_dated_campaign_run_records_its_messages_then(project: Project) -> None:
    summary = run_campaign(project, load_campaigns(project.prefect_file)["win-back"], as_of=PAST)
    assert summary.sent and summary.holdout
    start = ledger_time(PAST, "Europe/Budapest")
    rows = ledger_rows(
        project,
        select(messages.c.status, messages.c.planned_at, messages.c.finished_at).where(
            messages.c.campaign == "win-back"
        ),
    )
    for status, planned, finished in rows:
        assert _in_run(planned, start), (status, planned)
        if status == "sent":
            assert _in_run(finished, start) and finished >= planned
        else:
            assert status == "holdout" and finished is None
    for (at,) in ledger_rows(project, select(skips.c.at).where(skips.c.campaign == "win-back")):
        assert _in_run(at, start)


def test_a_past_dated_journey_run_records_its_steps_then(project: Project) -> None:
    summary = run_journey(project, load_journeys(project.prefect_file)["welcome"], as_of=PAST)
    assert summary.sent > 0
    start = ledger_time(PAST, "Europe/Budapest")
    rows = ledger_rows(
        project,
        select(messages.c.planned_at, messages.c.finished_at).where(
            messages.c.campaign == "welcome", messages.c.status == "sent"
        ),
    )
    assert len(rows) == summary.sent
    assert all(_in_run(planned, start) and _in_run(done, start) for planned, done in rows)


def test_a_run_as_of_now_keeps_the_wall_clock() -> None:
    before = utcnow()
    now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=1)))
    job = Job("c", CampaignSpec(segment="s", template="t"), now.replace(tzinfo=None))
    clock = job.clock("Etc/GMT-1")  # a fixed UTC+1 zone, as ``now`` above
    assert before - dt.timedelta(seconds=1) <= clock <= utcnow() + dt.timedelta(seconds=1)
