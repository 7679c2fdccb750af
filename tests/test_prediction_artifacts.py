"""The prediction check in the report flow: its markdown, table and chart are artifacts of
the flow run, with the numbers ``clvflow predict check`` gives for the same day."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clvflow.cli.main import app
from tests.conftest import AS_OF
from tests.test_report_flow import _artifacts, _png_size

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def test_report_flow_publishes_the_prediction_check(prefect_api: None, demo_project: Path) -> None:
    from clvflow.orchestration.report_flow import report_flow

    state = report_flow(
        project=str(demo_project), since="2026-11-01", as_of=AS_OF, return_state=True
    )
    assert state.is_completed()
    found = {a.key: a for a in asyncio.run(_artifacts(state.state_details.flow_run_id))}
    markdown = found["clv-report-predictions"].data
    table = json.loads(found["clv-report-prediction-check"].data)
    assert _png_size(found["clv-report-prediction-chart"].data)[0] > 0

    result = CliRunner().invoke(
        app,
        [
            "predict",
            "check",
            "--project",
            str(demo_project),
            "--as-of",
            AS_OF.isoformat(),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    check = json.loads(result.output)
    assert [row["repeat purchases before"] for row in table] == [
        row["label"] for row in check["by_repeat_purchases"]
    ]
    assert [row["customers"] for row in table] == [
        row["customers"] for row in check["by_repeat_purchases"]
    ]
    assert f"{check['actual_purchases']:,.0f} happened" in markdown
    assert sum(row["customers"] for row in table) == check["customers"] > 100


def test_clvflow_report_shows_the_prediction_check(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clvflow.cli.main import main

    args = ["--project", str(demo_project), "--as-of", AS_OF.isoformat()]
    assert main(["predict", "check", *args, "--format", "json"]) == 0
    check = json.loads(capsys.readouterr().out)
    assert main(["report", *args, "--since", "2026-11-01"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Predicted CLV: purchases in the holdout by past repeat purchases" in out
    assert f"{check['actual_purchases']:,.0f} happened" in out
    html = (demo_project / "reports" / "report.html").read_text()
    assert "Predicted CLV: how well the models predicted the past" in html
    assert f"{check['predicted_purchases']:,.0f} purchases" in html
