"""The report reads on one screen: a per-order campaign (one occurrence per order) is
summed per campaign, group, variant and locale; ``--detail`` lists each order's rows and
``--csv`` writes them. A real run on a small generated shop, a real SQLite ledger."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.cli.main import main
from clvflow.ledger.schema import messages
from clvflow.project.layout import Project
from clvflow.reporting.report import build_report
from clvflow.reporting.tables import attribution_rows, detail_rows
from tests.conftest import AS_OF, ProjectFactory, add_orders, ledger_rows
from tests.test_holdout_settings import CONFIG, CUSTOMERS, MARKETING, write_shop

PREFECT = """\
deployments:
  - name: thanks
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: thanks
      spec:
        segment: everyone
        template: hello
        resend: per_order
        variants:
          - {name: A, template: hello}
          - {name: B, template: hello}
"""
SINCE, UNTIL = "2026-11-01", "2026-11-30 12:00"
PERIOD = ["--since", SINCE, "--as-of", UNTIL]


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    root = make_project(
        {
            "segments/everyone.yaml": "description: all\nwhere:\n  customer_id: {is_set: true}\n",
            "templates/hello.html.j2": MARKETING,
            "prefect.yaml": PREFECT,
        },
        config=CONFIG,
    )
    write_shop(root)
    loaded = Project.load(root)
    summary = run_campaign(loaded, load_campaigns(loaded.prefect_file)["thanks"], as_of=AS_OF)
    assert summary.sent + summary.holdout == CUSTOMERS
    later = AS_OF + dt.timedelta(days=1)
    add_orders(loaded, [(f"C{i:03d}", later, 50.0) for i in range(1, CUSTOMERS + 1, 3)], "R")
    return loaded


def _cells(project: Project) -> pd.DataFrame:
    rows = ledger_rows(
        project,
        select(messages.c.occurrence, messages.c.status, messages.c.variant, messages.c.locale),
    )
    frame = pd.DataFrame(rows, columns=["occurrence", "status", "variant", "locale"])
    frame["group"] = frame["status"].map({"sent": "treated", "holdout": "holdout"})
    frame["variant"] = frame["variant"].fillna("—")
    frame["locale"] = frame["locale"].fillna("en")  # a holdout row keeps no locale: the shop's
    return frame


def test_a_per_order_campaign_reads_as_one_row_per_group_variant_and_locale(
    project: Project,
) -> None:
    report = build_report(project, dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 30, 12))
    rows = attribution_rows(report)
    ledger = _cells(project)
    keys = ["group", "variant", "locale"]
    expected = ledger.groupby(keys)["occurrence"].nunique()
    shown = {tuple(r[k] for k in keys): int(r["occurrences"]) for r in rows}
    assert len(rows) == len(expected) < 10  # treated A/B × 2 locales, holdout × 2 locales
    assert shown == {tuple(k): int(v) for k, v in expected.items()}
    assert sum(int(r["recipients"]) for r in rows) == CUSTOMERS
    assert sum(int(r["conversions"]) for r in rows) == len(range(1, CUSTOMERS + 1, 3))
    assert {r["campaign"] for r in rows} == {"thanks"}
    detail = detail_rows(report)
    assert len(detail) == len(ledger) == CUSTOMERS  # a row per order
    assert {r["occurrence"] for r in detail} == set(ledger["occurrence"])


def test_the_terminal_shows_the_summary_and_detail_lists_each_order(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first_order = str(_cells(project)["occurrence"].min())
    assert main(["report", "--project", str(project.root), *PERIOD]) == 0
    out = capsys.readouterr().out
    assert "Campaigns against their holdout" in out and "thanks" in out
    assert "By campaign, group, variant and locale" in out
    assert first_order not in out and "Each occurrence" not in out
    assert main(["report", "--project", str(project.root), *PERIOD, "--detail"]) == 0
    detailed = capsys.readouterr().out
    assert "Each occurrence" in detailed and first_order in detailed
    page = (project.root / "reports" / "report.html").read_text()
    assert first_order in page


def test_csv_writes_a_row_per_order(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    path = project.root / "exports" / "thanks.csv"
    assert main(["report", "--project", str(project.root), *PERIOD, "--csv", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    frame = pd.read_csv(path, dtype={"occurrence": str})
    assert list(frame.columns) == [
        "campaign", "occurrence", "group", "variant", "locale", "window_days", "recipients",
        "conversions", "orders", "revenue",
    ]  # fmt: skip
    assert len(frame) == CUSTOMERS and set(frame["occurrence"]) == set(
        _cells(project)["occurrence"]
    )
    assert frame["conversions"].sum() == len(range(1, CUSTOMERS + 1, 3))
    assert frame["revenue"].sum() == pytest.approx(50.0 * len(range(1, CUSTOMERS + 1, 3)))
    assert set(frame["window_days"]) == {5.0}
