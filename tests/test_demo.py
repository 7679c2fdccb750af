"""`clvflow demo` end to end on a small generated shop with its simulated past, through real
Prefect flow runs: .eml files for every campaign and journey step with real headers and
both parts; the journeys' later steps went out for entries the past left midway; a second
run sends 0."""

from __future__ import annotations

import email
import json
import shutil
from collections import Counter
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.cli.main import main
from clvflow.demo.past_rows import RUN_PREFIX
from clvflow.demo.run import generate_demo_data
from clvflow.journeys.catalog import load_journeys
from clvflow.ledger.schema import messages, skips
from clvflow.ledger.store import Ledger
from clvflow.orchestration.artifacts import artifact_key
from clvflow.project.layout import Project
from tests.conftest import AS_OF

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CUSTOMERS = 3000


@pytest.fixture
def shop_with_past(demo_project: Path) -> Path:
    """The repository's project with a freshly generated demo shop and its past, as of
    AS_OF's day."""
    shutil.rmtree(demo_project / "data")
    generate_demo_data(Project.load(demo_project), reference=AS_OF.date(), customers=CUSTOMERS)
    return demo_project


def test_demo_writes_real_emails_and_is_idempotent(
    prefect_api: None, shop_with_past: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_project = shop_with_past
    assert main(["demo", "--project", str(demo_project)]) == 0
    first = capsys.readouterr().out
    outbox = demo_project / "outbox"
    files = sorted(outbox.rglob("*.eml"))
    per_campaign = Counter(f.relative_to(outbox).parts[0] for f in files)
    assert len(per_campaign) >= 4, per_campaign
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert msg["Subject"].strip(), path
        assert msg["List-Unsubscribe"].startswith("<https://"), path
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", path
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        assert text is not None and text.get_content().strip(), path
        assert html is not None and "unsubscribe" in html.get_content().lower(), path
    index = (outbox / "index.html").read_text()
    assert all(f.relative_to(outbox).as_posix() in index for f in files)
    assert f"{len(files)} emails written" in first
    assert "clvflow report" in first  # the past is in the ledger
    manifest = json.loads((demo_project / "data" / "demo-shop.json").read_text())
    assert manifest["customers"] == CUSTOMERS and manifest["history"]["true_effects"]

    _artifacts_match_the_ledger(demo_project)
    _journey_steps_match_the_ledger(demo_project, files)

    assert main(["demo", "--project", str(demo_project)]) == 0
    second = capsys.readouterr().out
    assert "0 sent:" in second and "already sent" in second
    assert sorted(outbox.rglob("*.eml")) == files


def _latest_counts(keys: list[str]) -> dict[str, dict[str, int]]:
    """The latest table artifact of each key, as {what: count}."""
    return {key: {str(r["what"]): int(str(r["count"])) for r in _latest_rows(key)} for key in keys}


def _artifacts_match_the_ledger(project_dir: Path) -> None:
    """The table artifact of each campaign's (only) run, read back through the Prefect API,
    counts what the ledger holds for that campaign."""
    project = Project.load(project_dir)
    campaigns = load_campaigns(project.prefect_file)
    keys = {name: f"{artifact_key(name)}-counts" for name in campaigns}
    tables = _latest_counts(list(keys.values()))
    ledger = Ledger(project.ledger_url)
    real = ~messages.c.run_id.startswith(RUN_PREFIX)  # this run's rows, not the past's
    try:
        with ledger.engine.connect() as con:
            statuses = Counter(
                (str(c), str(s))
                for c, s in con.execute(select(messages.c.campaign, messages.c.status).where(real))
            )
            reasons = Counter(
                (str(c), str(r))
                for c, r in con.execute(
                    select(skips.c.campaign, skips.c.reason).where(
                        ~skips.c.run_id.startswith(RUN_PREFIX)
                    )
                )
            )
            locales = Counter(
                (str(c), str(loc))
                for c, loc in con.execute(
                    select(messages.c.campaign, messages.c.locale).where(
                        messages.c.status == "sent", real
                    )
                )
            )
    finally:
        ledger.close()
    total_sent = 0
    for name, key in keys.items():
        rows = tables[key]
        assert rows["sent"] == statuses[(name, "sent")], (name, rows)
        assert rows["failed"] == statuses[(name, "failed")], (name, rows)
        assert rows["holdout (withheld to measure uplift)"] == statuses[(name, "holdout")]
        assert rows.get("waiting for the send window", 0) == reasons[(name, "outside_send_window")]
        for (campaign, reason), count in reasons.items():
            if campaign == name and reason != "outside_send_window":
                assert rows[f"skipped: {reason.replace('_', ' ')}"] == count, (name, reason)
        for (campaign, locale), count in locales.items():
            if campaign == name:
                assert rows[f"locale {locale}: sent"] == count, (name, locale)
        total_sent += rows["sent"]
    sent_by_campaigns = sum(n for (c, s), n in statuses.items() if s == "sent" and c in keys)
    assert total_sent == sent_by_campaigns > 0


def _latest_rows(key: str) -> list[dict[str, object]]:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list[dict[str, object]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        assert found, f"no artifact {key}"
        data = found[0].data
        rows = json.loads(data) if isinstance(data, str) else data
        assert isinstance(rows, list)
        return rows

    return asyncio.run(read())


def _journey_steps_match_the_ledger(project_dir: Path, files: list[Path]) -> None:
    """Each journey's step table (its last run) counts what the ledger holds per step (the
    past's messages too); the run sent later steps too; every journey email names its
    journey and step."""
    project = Project.load(project_dir)
    journeys = load_journeys(project.prefect_file)
    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            sent = Counter(
                (str(c), str(o).rsplit("/", 1)[-1])
                for c, o in con.execute(
                    select(messages.c.campaign, messages.c.occurrence).where(
                        messages.c.status == "sent", messages.c.campaign.in_(list(journeys))
                    )
                )
            )
    finally:
        ledger.close()
    for name in journeys:
        rows = _latest_rows(f"{artifact_key(name)}-steps")
        assert {str(r["step"]): int(str(r["sent"])) for r in rows} == {
            step.name: sent[(name, step.name)] for step in journeys[name].spec.steps
        }
    outboxed = Counter(
        (p.relative_to(project.outbox_dir).parts[0], p.parent.name.rsplit("_", 1)[-1])
        for p in files
    )
    assert outboxed[("win-back-series", "reminder")] > 0
    assert outboxed[("post-purchase", "cross-sell")] > 0
    assert outboxed[("post-purchase", "review")] > 0
    for path in files:
        parts = path.relative_to(project.outbox_dir).parts
        if parts[0] in journeys:
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            assert msg["X-Clvflow-Campaign"] == parts[0]
            assert parts[1].endswith("_" + str(msg["X-Clvflow-Step"])), path
