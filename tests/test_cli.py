"""The command line on a copy of the demo project: messages, exit codes, outputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clvflow.cli.main import main
from tests.conftest import ProjectFactory

AS_OF = ["--as-of", "2026-11-23T10:00"]


@pytest.mark.slow
def test_validate_passes_on_the_shipped_project(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "campaign 'vip-thanks': rendered for" in out
    assert "journey 'win-back-series', step 'reminder': rendered for" in out


@pytest.mark.slow
def test_validate_reports_an_undefined_name_with_file_and_line(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo_project / "templates" / "vip_thanks.hu.html.j2"
    lines = path.read_text().splitlines()
    lines.insert(8, "{{ customer.shoe_size }}")
    path.write_text("\n".join(lines) + "\n")
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    out = capsys.readouterr().out
    assert "vip_thanks.hu.html.j2:9" in out
    assert "shoe_size" in out
    assert "nothing was sent" in out


@pytest.mark.slow
def test_validate_rejects_marketing_mail_without_unsubscribe_link(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    footer = demo_project / "templates" / "partials" / "footer.html.j2"
    footer.write_text(footer.read_text().replace("{{ unsubscribe_url }}", "https://shop.example"))
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    out = capsys.readouterr().out
    assert "lacks the unsubscribe link" in out
    # file and line: the line of the template that brings in the layout (and its footer)
    found = re.search(r"(\S+\.html\.j2):(\d+)", out)
    assert found is not None, out
    path = Path(found.group(1))
    if not path.is_absolute():
        path = demo_project / path
    line = path.read_text().splitlines()[int(found.group(2)) - 1]
    assert "extends" in line or "footer" in line


@pytest.mark.slow
def test_validate_rejects_a_syntax_error(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo_project / "templates" / "win_back.html.j2"
    path.write_text(path.read_text() + "\n{% if %}\n")
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    assert "win_back.html.j2:" in capsys.readouterr().out


@pytest.mark.slow
def test_validate_checks_campaigns_against_segments(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefect = demo_project / "prefect.yaml"
    prefect.write_text(prefect.read_text().replace("segment: lapsed", "segment: lapsd"))
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 2
    out = capsys.readouterr().out
    assert "unknown segment 'lapsd'" in out and "prefect.yaml" in out


@pytest.mark.slow
def test_campaign_spec_errors_name_the_line(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefect = demo_project / "prefect.yaml"
    text = prefect.read_text().replace("holdout_percent: 10", "holdout_percent: 90")
    prefect.write_text(text)
    line = text.splitlines().index("        holdout_percent: 90") + 1
    assert main(["validate", "--project", str(demo_project)]) == 2
    out = capsys.readouterr().out
    assert f"prefect.yaml:{line}" in out and "holdout_percent" in out


def test_config_unknown_key_names_the_line(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import BASE_CONFIG

    root = make_project(config=BASE_CONFIG.replace("  currency: EUR", "  curency: EUR"))
    assert main(["segments", "list", "--project", str(root)]) == 2
    err = capsys.readouterr().err
    assert "clvflow.yaml:8" in err and "unknown key 'curency'" in err
    assert "Traceback" not in err


def test_segments_members_csv_and_json(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(
        {"segments/repeat.yaml": "description: r\nwhere:\n  orders_count: {at_least: 2}\n"}
    )
    assert (
        main(
            ["segments", "members", "repeat", "--project", str(root), "--as-of", "2026-11-23 12:00"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == ["customer_id", "C1", "C2", "C4"]
    args = ["segments", "members", "repeat", "--format", "json", "--project", str(root)]
    assert main([*args, "--as-of", "2026-11-23 12:00"]) == 0
    assert json.loads(capsys.readouterr().out) == ["C1", "C2", "C4"]


def test_as_of_with_an_offset_is_converted_to_shop_time(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """11:00 UTC is 12:00 in Budapest (UTC+1 in November): the query says 12:00."""
    root = make_project(
        {"segments/repeat.yaml": "description: r\nwhere:\n  orders_count: {at_least: 2}\n"}
    )
    args = ["segments", "sql", "repeat", "--project", str(root)]
    assert main([*args, "--as-of", "2026-11-23T11:00:00+00:00"]) == 0
    assert "TIMESTAMP '2026-11-23 12:00:00'" in capsys.readouterr().out


def test_segments_sql_and_unknown_segment(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(
        {"segments/repeat.yaml": "description: r\nwhere:\n  orders_count: {at_least: 2}\n"}
    )
    assert (
        main(["segments", "sql", "repeat", "--project", str(root), "--as-of", "2026-11-23 12:00"])
        == 0
    )
    sql = capsys.readouterr().out
    assert 'cf."orders_count" >= 2' in sql and "TIMESTAMP '2026-11-23 12:00:00'" in sql
    assert main(["segments", "show", "repeats", "--project", str(root)]) == 3
    assert "did you mean 'repeat'" in capsys.readouterr().err


def _first_customer(project: Path) -> str:
    return (project / "data" / "customers.csv").read_text().splitlines()[1].split(",")[0]


def test_preview_writes_html_and_text(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = demo_project / "previews"
    cid = _first_customer(demo_project)
    args = ["preview", "win_back", "--customer", cid, "--locale", "hu", "--out", str(out_dir)]
    assert main([*args, "--project", str(demo_project), *AS_OF]) == 0
    printed = capsys.readouterr().out
    html = out_dir / f"win_back.{cid}.hu.html"
    text = out_dir / f"win_back.{cid}.hu.txt"
    assert f"html: {html}" in printed.replace("\n", "")
    assert html.read_text().startswith("<!DOCTYPE") or "<html" in html.read_text()
    assert "subject:" in printed
    assert text.read_text().strip()
    assert 'lang="hu"' in html.read_text()


def test_run_unknown_campaign_suggests_the_name(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "winback-series", "--project", str(demo_project)]) == 2
    assert "did you mean 'win-back-series'" in capsys.readouterr().err


@pytest.mark.slow
def test_inspection_commands_do_not_import_prefect(demo_project: Path) -> None:
    cid = _first_customer(demo_project)
    script = (
        "import sys\n"
        "from clvflow.cli.main import main\n"
        f"for args in (['validate', '--project', {str(demo_project)!r}],"
        f" ['segments', 'list', '--project', {str(demo_project)!r}],"
        f" ['preview', 'thank_you', '--customer', {cid!r}, '--project', {str(demo_project)!r}]):\n"
        "    assert main(args) == 0, args\n"
        "print('prefect' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_validate_reports_a_missing_translation(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (demo_project / "templates" / "points_expiry.ru.html.j2").unlink()
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    out = capsys.readouterr().out
    assert "points_expiry.ru.html.j2" in out and "no 'ru' version" in out


def test_validate_rejects_marketing_mail_without_postal_address(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    footer = demo_project / "templates" / "partials" / "footer.html.j2"
    footer.write_text(footer.read_text().replace("{{ shop.postal_address }}", ""))
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    out = capsys.readouterr().out
    assert "lacks the shop's postal address" in out
    assert ".html.j2" in out  # the template file that renders without it


def test_preview_subject_and_headers_never_carry_line_breaks(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from clvflow.compliance.secret import signing_key
    from clvflow.data.sources import open_shop_data
    from clvflow.project.layout import Project
    from clvflow.rendering.composer import Composer
    from clvflow.rendering.templates import TemplateLibrary
    from tests.conftest import AS_OF as WHEN

    root = make_project(
        {
            "templates/t.html.j2": '---\nsubject: "Hi {{ customer.first_name }}"\n---\n'
            '<p><a href="{{ unsubscribe_url }}">u</a> {{ shop.postal_address }}</p>\n'
        }
    )
    project = Project.load(root)
    data = open_shop_data(project)
    try:
        composer = Composer(
            project.config.shop,
            data,
            TemplateLibrary(project.templates_dir, "en"),
            signing_key(project.state_dir, allow_local=True),
            WHEN,
        )
        row = {"customer_id": "C1", "first_name": "Ann\r\nBcc: victim@example.com", "locale": "en"}
        (item,) = composer.compose("t", "win-back", [("once", row)])
    finally:
        data.close()
    assert item.email is not None
    assert item.email.subject == "Hi Ann Bcc: victim@example.com"
    for name, value in [("Subject", item.email.subject), *item.headers.items()]:
        assert "\r" not in value and "\n" not in value, name
    assert item.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_validate_renders_templates_no_campaign_uses(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = demo_project / "templates" / "draft.html.j2"
    draft.write_text(
        '---\nsubject: "Hi {{ customer.first_name }}"\n---\n'
        '{% extends "layouts/base.html.j2" %}\n{% block content %}\n'
        "<p>{{ customer.favourite_colour }}</p>\n{% endblock %}\n"
    )
    for locale in ("hu", "ru"):
        (demo_project / "templates" / f"draft.{locale}.html.j2").write_text(draft.read_text())
    assert main(["validate", "--project", str(demo_project), *AS_OF]) == 4
    out = capsys.readouterr().out
    assert "draft.html.j2:6" in out and "favourite_colour" in out
    assert "templates without a campaign (draft)" in out
