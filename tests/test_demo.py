"""`clvflow demo` end to end on a small generated shop, through real Prefect flow runs:
.eml files for every campaign with real headers and both parts; a second run sends 0."""

from __future__ import annotations

import email
from collections import Counter
from email import policy
from pathlib import Path

import pytest

from clvflow.cli.main import main

pytestmark = pytest.mark.prefect


def test_demo_writes_real_emails_and_is_idempotent(
    prefect_api: None, demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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

    assert main(["demo", "--project", str(demo_project)]) == 0
    second = capsys.readouterr().out
    assert "0 sent:" in second and "already sent" in second
    assert sorted(outbox.rglob("*.eml")) == files
