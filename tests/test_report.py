"""`clvflow report`: a self-contained HTML file with both charts embedded as PNG data URIs,
written without importing Prefect; bad input exits non-zero with a message."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.cli.main import main
from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.measurement.charts import CLV_SIZE, COHORT_SIZE
from clvflow.project.layout import Project
from tests.conftest import AS_OF, BASE_CONFIG, ROOT, ProjectFactory
from tests.test_campaign_run import FILES

SENT = dt.datetime(2026, 11, 23, 11, 0)
ARGS = ["--as-of", "2026-11-30 12:00", "--since", "2026-11-01"]


@pytest.fixture
def project(make_project: ProjectFactory) -> Project:
    loaded = Project.load(make_project(FILES))
    run_campaign(loaded, load_campaigns(loaded.prefect_file)["win-back"], as_of=AS_OF)
    ledger = Ledger(loaded.ledger_url)
    with ledger.engine.begin() as con:  # the run happened at AS_OF (11:00 UTC), not now
        con.execute(update(messages).values(planned_at=SENT, finished_at=SENT))
    ledger.close()
    return loaded


def _images(page: str) -> list[Image.Image]:
    uris = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


def test_report_writes_html_with_both_charts_embedded(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["report", "--project", str(project.root), *ARGS, "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<script" not in page and 'src="http' not in page  # nothing to fetch
    images = _images(page)
    assert [im.format for im in images] == ["PNG", "PNG"]
    assert [im.size for im in images] == [COHORT_SIZE, CLV_SIZE]
    for im in images:
        im.load()  # the whole image decodes
        assert len(im.convert("L").getcolors(maxcolors=65536) or []) > 20  # drawn, not blank
    for name, size in (("cohort_retention.png", COHORT_SIZE), ("clv_distribution.png", CLV_SIZE)):
        with Image.open(out / name) as im:
            assert im.size == size
    assert "win-back" in page and "holdout" in page
    assert "Too small to conclude" in page  # 6 customers are no experiment
    assert "repeat purchase rate" in page and "retention rate" in page


def test_default_folder_is_reports_in_the_project(project: Project) -> None:
    assert main(["report", "--project", str(project.root), *ARGS]) == 0
    assert (project.root / "reports" / "report.html").is_file()


@pytest.mark.slow
def test_the_command_does_not_import_prefect(project: Project, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from clvflow.cli.main import main\n"
        f"rc = main(['report', '--project', {str(project.root)!r}, *{ARGS!r}, "
        f"'--out', {str(tmp_path)!r}])\n"
        "assert rc == 0, rc\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')\n"
        "assert not loaded, loaded[:5]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").is_file()


def test_shop_text_is_escaped(make_project: ProjectFactory, tmp_path: Path) -> None:
    config = BASE_CONFIG.replace("name: Test Shop", 'name: "Paper <b>&</b> Vows"')
    root = make_project(FILES, config=config)
    assert main(["report", "--project", str(root), *ARGS, "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Paper &lt;b&gt;&amp;&lt;/b&gt; Vows" in page and "<b>&</b>" not in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "is not a time"),
        (["--since", "2026-12-01", "--as-of", "2026-11-30"], "is not before"),
    ],
)
def test_bad_times_exit_with_a_message(
    project: Project, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "--project", str(project.root), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "--since" in err and "Traceback" not in err


def test_a_missing_channel_column_exits_2(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    config = BASE_CONFIG + (
        "measurement:\n  acquisition:\n    channel_column: utm_source\n"
        "    cost_per_customer: {paid: 10}\n"
    )
    root = make_project(FILES, config=config)
    assert main(["report", "--project", str(root), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "measurement.acquisition.channel_column" in err and "utm_source" in err
