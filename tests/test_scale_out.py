"""Scale-out: one campaign's batches spread over several processes that share the
PostgreSQL ledger, sending through the SendGrid stand-in — every recipient exactly once.

Two shapes, both through real Prefect flow runs: (1) one flow run whose batches fan out
over two task-runner processes (``spec.workers: 2``); (2) two flow runs of the same
campaign at once in two processes, as two workers on one work pool would run them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.sendgrid_standin import FaultConfig, SendGridStandIn
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from tests.conftest import add_win_back_campaign

pytestmark = [pytest.mark.prefect, pytest.mark.postgres, pytest.mark.slow]

KEY = "SG.scale-out-key"
AS_OF = dt.datetime(2026, 11, 23, 10, 0)
CAMPAIGN = "win-back"


@pytest.fixture(autouse=True)
def _win_back_campaign(demo_project: Path) -> None:
    add_win_back_campaign(demo_project)


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_keys={KEY}, seed=5) as server:
        yield server


@pytest.fixture
def project(
    demo_project: Path, standin: SendGridStandIn, pg_ledger: str, monkeypatch: pytest.MonkeyPatch
) -> Project:
    config = demo_project / "clvflow.yaml"
    config.write_text(config.read_text().replace("batch_size: 500", "batch_size: 25"))
    prefect = demo_project / "prefect.yaml"
    prefect.write_text(
        prefect.read_text().replace("valid_days: 21, prefix: BACK}\n",
                                    "valid_days: 21, prefix: BACK}\n        workers: 2\n")
    )  # fmt: skip
    monkeypatch.setenv("CLVFLOW_DELIVERY", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    loaded = Project.load(demo_project)
    assert loaded.ledger_url == pg_ledger
    return loaded


def _ledger_sent(project: Project) -> list[str]:
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            rows = con.execute(
                select(messages.c.email).where(
                    messages.c.campaign == CAMPAIGN, messages.c.status == "sent"
                )
            ).all()
    finally:
        ledger.close()
    return sorted(str(r[0]).lower() for r in rows)


def test_batches_fan_out_over_two_processes(
    prefect_api: None, project: Project, standin: SendGridStandIn
) -> None:
    from clvflow.orchestration.flows import campaign_flow

    campaign = load_campaigns(project.prefect_file)[CAMPAIGN]
    assert campaign.spec.workers == 2
    standin.set_faults(FaultConfig(rate_slow=0.3, slow_delay_s=0.01, rate_429=0.05))
    summary = campaign_flow(
        campaign=CAMPAIGN, spec=campaign.spec, as_of=AS_OF, project=str(project.root)
    )
    delivered = standin.deliveries_per_recipient()
    assert summary["sent"] > 50 and summary["failed"] == 0
    assert summary["workers"] == 2, summary  # batches really ran in two processes
    assert set(delivered.values()) == {1}
    assert sorted(delivered) == _ledger_sent(project)
    assert len(delivered) == summary["sent"]
    # a second run finds everything done
    again = campaign_flow(
        campaign=CAMPAIGN, spec=campaign.spec, as_of=AS_OF, project=str(project.root)
    )
    assert again["sent"] == 0 and again["skipped"]["already_sent"] == summary["sent"]
    assert set(standin.deliveries_per_recipient().values()) == {1}


CHILD = """\
import datetime as dt, json, sys
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from clvflow.campaigns.catalog import load_campaigns
from clvflow.orchestration.flows import campaign_flow
from clvflow.project.layout import Project
project = Project.load(sys.argv[1])
campaign = load_campaigns(project.prefect_file)[sys.argv[2]]
with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
    summary = campaign_flow(campaign=campaign.name, spec=campaign.spec,
                            as_of=dt.datetime.fromisoformat(sys.argv[3]), project=sys.argv[1])
print(json.dumps(summary))
"""


def test_two_flow_runs_at_once_send_each_recipient_once(
    prefect_api: None, project: Project, standin: SendGridStandIn
) -> None:
    import json

    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    assert api, "the session's Prefect API"
    prefect = project.prefect_file
    prefect.write_text(prefect.read_text().replace("        workers: 2\n", ""))
    standin.set_faults(FaultConfig(rate_slow=0.5, slow_delay_s=0.01))
    env = {**os.environ, "PREFECT_API_URL": api}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(project.root), CAMPAIGN, AS_OF.isoformat()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [c.communicate(timeout=300) for c in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    delivered = standin.deliveries_per_recipient()
    assert set(delivered.values()) == {1}
    assert sum(s["sent"] for s in summaries) == len(delivered) > 50
    assert sorted(delivered) == _ledger_sent(project)
