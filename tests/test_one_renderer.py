"""Preview, validate and campaign runs render through the same path: preview shows what a
run sends (the template linked into one, as a run renders it from a template's
``LINK_AFTER``-th message on), and validate renders every message linked and as written
and fails, naming the template file and locale, when the two differ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.cli.main import main
from clvflow.compliance.secret import signing_key
from clvflow.compliance.unsubscribe import make_token
from clvflow.ledger.schema import messages
from clvflow.project.layout import Project
from clvflow.rendering import linked
from clvflow.rendering.composer import LINK_AFTER
from tests.conftest import AS_OF, ledger_rows, outbox_email

WHEN = ["--as-of", AS_OF.isoformat()]
CAMPAIGN, TEMPLATE = "vip-thanks", "vip_thanks"


def _wrong_shop_name(real: Any) -> Any:
    """A broken ``fold`` that puts a wrong ``shop.name`` (a value the linker turns into a
    constant) into every linked template. A real difference between a linked template and
    the template as written cannot be produced on purpose (it would be a bug in the linker,
    to be fixed), so tests replace the product's fold step with this one to simulate it;
    the templates as written are left as they are."""

    def fold(env: Any, name: str, tree: Any, constants: Any, hidden: Any, prefix: str) -> Any:
        shop = {**constants["shop"], "name": "Another Shop"}
        return real(env, name, tree, {**constants, "shop": shop}, hidden, prefix)

    return fold


@pytest.mark.parametrize("broken", [False, True])
def test_preview_shows_what_a_run_sends_past_its_linking_point(
    demo_project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    broken: bool,
) -> None:
    if broken:  # the linked template differs from the one as written: preview shows it too
        monkeypatch.setattr(linked, "fold", _wrong_shop_name(linked.fold))
    project = Project.load(demo_project)
    run_campaign(project, load_campaigns(project.prefect_file)[CAMPAIGN], as_of=AS_OF)
    sent = ledger_rows(
        project,
        select(messages.c.customer_id, messages.c.locale, messages.c.occurrence)
        .where(messages.c.campaign == CAMPAIGN, messages.c.status == "sent")
        .order_by(messages.c.id),
    )
    # The run renders in claim order (message ids): the last customer of the most common
    # locale got a message rendered after that (template, locale) was linked.
    locale = Counter(row[1] for row in sent).most_common(1)[0][0]
    in_locale = [row for row in sent if row[1] == locale]
    assert len(in_locale) > LINK_AFTER
    customer, _, occurrence = in_locale[-1]
    capsys.readouterr()

    out = tmp_path / "previews"
    args = ["preview", TEMPLATE, "--customer", customer, "--out", str(out)]
    assert main([*args, "--project", str(demo_project), *WHEN]) == 0
    printed = capsys.readouterr().out
    email = outbox_email(project, CAMPAIGN, occurrence, customer)
    # preview signs the unsubscribe link for the campaign "preview", a run for its own
    key = signing_key(project.state_dir, allow_local=True)
    previewed, run = make_token(key, customer, "preview"), make_token(key, customer, CAMPAIGN)

    def shown(suffix: str) -> str:
        text = (out / f"{TEMPLATE}.{customer}.{locale}.{suffix}").read_text(encoding="utf-8")
        assert previewed in text
        return text.replace(previewed, run)

    def sent_part(subtype: str) -> str:
        part = email.get_body((subtype,))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n")  # .eml lines end in CRLF

    assert shown("html") == sent_part("html")
    assert shown("txt") == sent_part("plain")
    assert f"subject: {email['Subject']}\n" in printed
    assert ("Another Shop" in shown("html")) is broken


def test_validate_fails_when_a_linked_rendering_differs_from_the_template_as_written(
    demo_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # simulated: a linker bug cannot be produced on purpose (see _wrong_shop_name)
    monkeypatch.setattr(linked, "fold", _wrong_shop_name(linked.fold))
    assert main(["validate", "--project", str(demo_project), *WHEN]) == 4
    out = capsys.readouterr().out
    for locale, file in (("en", "win_back.html.j2"), ("hu", "win_back.hu.html.j2")):
        line = next(x for x in out.splitlines() if f"template 'win_back' (locale {locale})" in x)
        assert line.startswith("error: ") and file in line
        assert "differently linked and as written" in line
    assert "please report it" in out.replace("\n", " ")


def test_validate_renders_the_shipped_templates_the_same_both_ways(
    demo_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--project", str(demo_project), *WHEN]) == 0
    out = capsys.readouterr().out
    assert "differently" not in out
    assert "campaign 'vip-thanks': rendered for" in out and "linked and as written" in out
