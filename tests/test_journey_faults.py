"""A journey through the SendGrid stand-in: every step message carries its journey and step
(headers and custom_args), and a run killed between claiming and sending, then run again,
sends every planned message at most once and leaves no entry behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.sendgrid_standin import FaultConfig, SendGridStandIn
from sqlalchemy import select

from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.ledger.schema import journey_entries, messages
from clvflow.project.layout import Project
from tests.conftest import AS_OF, ledger_rows

KEY = "SG.journey-key"
JOURNEY = "win-back-series"
WHEN = AS_OF.replace(hour=10)
RUNNER = """
import datetime as dt, sys
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.project.layout import Project
project = Project.load(sys.argv[1])
run_journey(project, load_journeys(project.prefect_file)[sys.argv[2]],
            as_of=dt.datetime.fromisoformat(sys.argv[3]))
"""


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_keys={KEY}, seed=3) as server:
        yield server


@pytest.fixture
def project(
    demo_project: Path, standin: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> Project:
    config = demo_project / "clvflow.yaml"
    text = config.read_text().replace("batch_size: 500", "batch_size: 10\n  run_lease_seconds: 1")
    text = text.replace("delivery:\n", "delivery:\n  sendgrid:\n    recipients_per_request: 1\n", 1)
    config.write_text(text)
    monkeypatch.setenv("CLVFLOW_DELIVERY", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    return Project.load(demo_project)


def _offers(project: Project) -> dict[str, str]:
    rows = ledger_rows(
        project,
        select(messages.c.email, messages.c.status).where(
            messages.c.campaign == JOURNEY, messages.c.occurrence.endswith("/offer")
        ),
    )
    return {str(e).lower(): str(s) for e, s in rows}


@pytest.mark.slow
def test_killed_between_claim_and_send_then_run_again(
    project: Project, standin: SendGridStandIn
) -> None:
    standin.set_faults(FaultConfig(rate_slow=1.0, slow_delay_s=0.05))
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(project.root), JOURNEY, WHEN.isoformat()],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(standin.deliveries()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    claimed = _offers(project)
    before = len(standin.deliveries())
    assert 20 <= before < len(claimed)  # killed with claims not yet sent
    standin.set_faults(FaultConfig())
    time.sleep(1.2)  # the dead run's lease (run_lease_seconds: 1) expires
    run_journey(project, load_journeys(project.prefect_file)[JOURNEY], as_of=WHEN)

    offers = _offers(project)
    delivered = standin.deliveries_per_recipient()
    assert set(delivered.values()) == {1}  # nobody twice
    assert set(offers.values()) <= {"sent", "unknown"}  # every claim ended with an outcome
    assert {e for e, s in offers.items() if s == "sent"} <= set(delivered)
    assert set(delivered) <= set(offers)
    # every entry whose offer is decided moved on to the reminder; the others (outside
    # the send window in their time zone) wait at the offer
    entries = ledger_rows(
        project,
        select(journey_entries.c.customer_id, messages.c.status, journey_entries.c.step)
        .select_from(
            journey_entries.outerjoin(
                messages,
                (messages.c.campaign == JOURNEY)
                & (messages.c.customer_id == journey_entries.c.customer_id)
                & (messages.c.occurrence == journey_entries.c.occurrence + "/offer"),
            )
        )
        .where(
            journey_entries.c.journey == JOURNEY,
            journey_entries.c.holdout == 0,
            journey_entries.c.exited_at.is_(None),
        ),
    )
    seen = {(status, step) for _, status, step in entries}
    assert ("sent", 1) in seen and seen <= {("sent", 1), ("unknown", 1), (None, 0)}
    # each message names its journey and step, in headers and custom_args
    for accepted in standin.accepted()[:10]:
        body = accepted.body
        args = {**body.get("custom_args", {})}
        for person in body["personalizations"]:
            args.update(person.get("custom_args", {}))
        headers = {**body.get("headers", {})}
        for person in body["personalizations"]:
            headers.update(person.get("headers", {}))
        assert args["clvflow_campaign"] == JOURNEY and args["clvflow_step"] == "offer"
        assert headers["X-Clvflow-Campaign"] == JOURNEY and headers["X-Clvflow-Step"] == "offer"
