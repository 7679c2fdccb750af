"""The commands around the Prefect server: `clvflow emit order-placed` builds the event from
the shop's data (and refuses to emit into a temporary server), `clvflow serve` says clearly
when the configured server does not answer; the suppression-sync flow on a real Prefect
API with the SendGrid stand-in."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from fakes.sendgrid_standin import SendGridStandIn

from clvflow.cli.main import main
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project


def _first_order(project: Path) -> tuple[str, str]:
    line = (project / "data" / "orders.csv").read_text().splitlines()[1].split(",")
    return line[0], line[1]  # order_id, customer_id


def test_emit_prints_the_event_filled_from_the_shops_data(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order_id, customer_id = _first_order(demo_project)
    args = ["emit", "order-placed", "--customer", customer_id, "--order", order_id, "--print"]
    assert main([*args, "--project", str(demo_project)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["order"]["order_id"] == order_id
    assert payload["customer"]["customer_id"] == customer_id
    assert "@" in payload["customer"]["email"]
    assert payload["order"]["total"] > 0 and payload["order"]["items"]
    # the demo shop's order totals are the sums of their lines
    lines = sum(i["quantity"] * i["unit_price"] for i in payload["order"]["items"])
    assert lines == pytest.approx(payload["order"]["total"], abs=0.01)


def test_emit_refuses_without_a_prefect_server(
    demo_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    args = ["emit", "order-placed", "--customer", "C000001", "--order", "X-1"]
    assert main([*args, "--project", str(demo_project)]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and "Traceback" not in err


def test_serve_says_when_the_configured_server_does_not_answer(
    demo_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    assert main(["serve", "--project", str(demo_project)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}/api does not answer" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.prefect
def test_suppression_sync_flow_brings_sendgrids_lists_into_the_ledger(
    prefect_api: None, demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clvflow.orchestration.suppression_flow import suppression_sync_flow

    assert suppression_sync_flow(project=str(demo_project)) == {}  # outbox: nothing to sync
    with SendGridStandIn(api_keys={"SG.sync"}) as standin:
        standin.add_suppression("unsubscribes", "gone@example.com")
        standin.add_suppression("bounces", "bounced@example.com")
        standin.add_suppression("spam_reports", "angry@example.com")
        monkeypatch.setenv("CLVFLOW_DELIVERY", "sendgrid")
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.sync")
        added = suppression_sync_flow(project=str(demo_project))
    assert added == {"unsubscribed": 1, "bounced": 1, "spam_report": 1}
    ledger = Ledger(Project.load(demo_project).ledger_url)
    try:
        found = ledger.suppressed(["gone@example.com", "bounced@example.com", "angry@example.com"])
    finally:
        ledger.close()
    assert found == {
        "gone@example.com": "unsubscribed",
        "bounced@example.com": "bounced",
        "angry@example.com": "spam_report",
    }


@pytest.mark.slow
@pytest.mark.prefect
def test_a_served_cron_deployment_gets_its_runs_scheduled(
    prefect_api: None, demo_project: Path
) -> None:
    """The server turns a cron schedule that `clvflow serve` registers into scheduled flow
    runs, as its scheduler service does: points-expiry's (daily 08:00, Budapest), across the
    spring change of clock."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from clvflow.orchestration.serve import register_deployments

    register_deployments(Project.load(demo_project), only=["points-expiry"])
    with httpx.Client(base_url=str(PREFECT_API_URL.value()), trust_env=False) as api:
        deployment = api.get("/deployments/name/campaign/points-expiry")
        deployment.raise_for_status()
        deployment_id = deployment.json()["id"]
        window = {"start_time": "2030-03-30T00:00:00+00:00", "min_runs": 3, "max_runs": 3}
        api.post(f"/deployments/{deployment_id}/schedule", json=window).raise_for_status()
        runs = api.post(
            "/flow_runs/filter",
            json={
                "deployments": {"id": {"any_": [deployment_id]}},
                "flow_runs": {"expected_start_time": {"after_": window["start_time"]}},
            },
        )
        runs.raise_for_status()
    scheduled = sorted((run["expected_start_time"], run["state_type"]) for run in runs.json())
    assert scheduled == [
        ("2030-03-30T07:00:00Z", "SCHEDULED"),  # 08:00 CET
        ("2030-03-31T06:00:00Z", "SCHEDULED"),  # 08:00 CEST
        ("2030-04-01T06:00:00Z", "SCHEDULED"),
    ]
