"""End to end on a real `prefect server` (SQLite, a free local port): `clvflow serve` serves
prefect.yaml and the web app; a signed order posted to POST /webhooks/orders becomes a
shop.order.placed event, the post-purchase journey's trigger starts a flow run with that
order, and the outbox holds exactly one thank-you for the order, even when the
shop delivers the webhook twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from clvflow.ledger.schema import messages
from clvflow.project.layout import Project
from clvflow.web.orders import SIGNATURE_HEADER, sign
from tests.conftest import ledger_rows

pytestmark = pytest.mark.slow

SECRET = "integration-order-secret"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(check: Any, timeout: float, what: str, context: Any = None) -> Any:
    """``check()`` until it is truthy; on a timeout, the failure shows ``context()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{context()}" if context else ""))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on SQLite in a throwaway PREFECT_HOME, on a free port."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait(lambda: _healthy(f"{api}/health"), 120, "the Prefect server")
        yield api
    finally:
        _stop(process)
        log.close()


def _children(pid: int) -> list[str]:
    return [
        child
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _assert_stops_cleanly(serve: subprocess.Popen[bytes], log_path: Path) -> None:
    """SIGTERM stops serving cleanly: the deployments paused, no traceback, exit code 0.
    The signal goes to serve alone, once its flow-run processes have exited."""
    _wait(lambda: not _children(serve.pid), 60, "the flow-run processes to exit")
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0
    text = log_path.read_text(errors="replace")
    assert "All deployments have been paused" in text
    assert "Traceback" not in text, text[-3000:]


def _flow_runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    reply = httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"id": {"any_": [deployment_id]}}},
        timeout=10,
        trust_env=False,
    )
    reply.raise_for_status()
    return list(reply.json())


def _post_order(web: str, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(
        f"{web}/webhooks/orders",
        content=raw,
        headers={SIGNATURE_HEADER: sign(SECRET, raw), "Content-Type": "application/json"},
        timeout=30,
        trust_env=False,
    )


def test_order_webhook_triggers_one_thank_you_email(
    prefect_server: str, demo_project: Path, tmp_path: Path
) -> None:
    api = prefect_server
    web_port = _free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "serve-home"),
        "CLVFLOW_ORDER_WEBHOOK_SECRET": SECRET,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    _drop_hourly_schedule(demo_project / "prefect.yaml")
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    serve = subprocess.Popen(
        [str(BIN / "clvflow"), "serve", "--project", str(demo_project),
         "--web-port", str(web_port), "--only", "post-purchase"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    web = f"http://127.0.0.1:{web_port}"
    try:
        _wait(lambda: _healthy(f"{web}/healthz"), 90, "the web app")
        # the web app opens only once the deployment and its trigger are registered: an
        # order event before the trigger exists would start nothing
        deployment = _deployment(api, "journey", "post-purchase")
        assert deployment is not None
        assert deployment["parameters"]["campaign"] == "post-purchase"
        triggers = _automations(api, deployment["id"])
        assert [a["trigger"]["expect"] for a in triggers] == [["shop.order.placed"]]
        assert b"serving 1 deployment" in log_path.read_bytes()

        body = {
            "order": {
                "order_id": "WEB-1001",
                "placed_at": "2026-11-23T11:00:00",
                "total": 64.0,
                "currency": "EUR",
                "items": [{"product_id": "P001", "quantity": 2, "unit_price": 32.0}],
            },
            "customer": {
                "customer_id": "C-WEB-1",  # not in the shop's export yet
                "email": "wendy@example.com",
                "first_name": "Wendy",
                "locale": "en",
            },
        }
        reply = _post_order(web, body)
        assert reply.status_code == 202, reply.text

        def completed(count: int) -> list[dict[str, Any]] | None:
            runs = _flow_runs(api, deployment["id"])
            done = [r for r in runs if r["state_type"] == "COMPLETED"]
            failed = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
            assert not failed, (failed, log_path.read_text(errors="replace")[-3000:])
            return done if len(done) >= count else None

        def state() -> str:
            runs = [
                (r["name"], r["state_type"], r["state_name"])
                for r in _flow_runs(api, deployment["id"])
            ]
            return f"flow runs: {runs}\nserve log:\n{log_path.read_text(errors='replace')[-4000:]}"

        first = _wait(lambda: completed(1), 120, "the post-purchase flow run", state)
        run = first[0]
        assert run["name"].startswith("post-purchase · ")
        assert run["name"].endswith(" · order WEB-1001")
        assert run["parameters"]["order"]["order"]["order_id"] == "WEB-1001"
        assert run["parameters"]["order"]["customer"]["email"] == "wendy@example.com"
        assert run["parameters"]["campaign"] == "post-purchase"

        # the journey's first step, at once, though the shop's data has neither order nor
        # customer yet
        outbox = demo_project / "outbox" / "post-purchase" / "WEB-1001_thank-you"
        assert [p.name for p in outbox.glob("*.eml")] == ["C-WEB-1.eml"]
        assert "Wendy" in (outbox / "C-WEB-1.eml").read_text()

        # the shop retries the webhook: a second event, a second flow run, no second email
        assert _post_order(web, body).status_code == 202
        both = _wait(lambda: completed(2), 120, "the second flow run", state)
        assert len(both) == 2
        assert [p.name for p in outbox.glob("*.eml")] == ["C-WEB-1.eml"]
        assert len(list((demo_project / "outbox" / "post-purchase").rglob("*.eml"))) == 1
        rows = ledger_rows(
            Project.load(demo_project),
            select(messages.c.occurrence, messages.c.customer_id, messages.c.status),
        )
        assert rows == [("WEB-1001/thank-you", "C-WEB-1", "sent")]
        _assert_stops_cleanly(serve, log_path)
    finally:
        _stop(serve)
        log.close()


def _drop_hourly_schedule(config: Path) -> None:
    """post-purchase without its hourly schedule: a scheduled run at the top of the hour
    would be a flow run of the deployment that no order started."""
    hourly = '    schedules:\n      - cron: "0 * * * *"\n        timezone: Europe/Budapest\n    triggers:'
    assert hourly in config.read_text()
    config.write_text(config.read_text().replace(hourly, "    triggers:", 1))


def _automations(api: str, deployment_id: str) -> list[dict[str, Any]]:
    reply = httpx.get(
        f"{api}/automations/related-to/prefect.deployment.{deployment_id}",
        timeout=10,
        trust_env=False,
    )
    reply.raise_for_status()
    return list(reply.json())


def _deployment(api: str, flow: str, name: str) -> dict[str, Any] | None:
    reply = httpx.get(f"{api}/deployments/name/{flow}/{name}", timeout=10, trust_env=False)
    return reply.json() if reply.status_code == 200 else None
