"""The console in a real headless Chromium, on the small generated demo shop after a
campaign run and a journey run: every page loads without a console error (a screenshot of
each is written under the test's folder); the previewed email shows the same text as the
message the outbox wrote; a customer named ``<script>alert(1)</script>`` stays text; without
signing in, every page leads to the sign-in form, and the unsubscribe page still works."""

from __future__ import annotations

import base64
import csv
import email
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.compliance.secret import signing_key
from clvflow.compliance.unsubscribe import make_token
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.project.layout import Project
from clvflow.web.app import create_app
from clvflow.web.console.access import PASSWORD_ENV
from tests.browser.chromium import chromium
from tests.browser.server import serving
from tests.conftest import AS_OF, ROOT

pytestmark = pytest.mark.slow

PASSWORD = "a console passphrase"
SCRIPT_NAME = "<script>alert(1)</script>"
WHEN = AS_OF.isoformat(sep=" ")
WAIT = 30  # seconds a page may take to show (a bound, not a pause)


@dataclass
class Shop:
    project: Project
    base: str
    screens: Path
    sent_to: str  # a customer the vip-thanks run wrote an email for
    scripted: str  # the customer named SCRIPT_NAME


def _rename(customers: Path, customer_id: str, first_name: str) -> None:
    with customers.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    for row in rows:
        if row["customer_id"] == customer_id:
            row["first_name"] = first_name
    with customers.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Iterator[Shop]:
    """The demo shop (a copy of the repository's project), a customer renamed to a script,
    vip-thanks sent and win-back-series advanced as of AS_OF; the web app serving it with
    the console on."""
    root = tmp_path_factory.mktemp("console-shop")
    for name in ("segments", "templates", "flows"):
        shutil.copytree(ROOT / name, root / name)
    for name in ("clvflow.yaml", "prefect.yaml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(demo_data, root / "data")
    (root / "segments" / "typo.yaml").write_text(
        "description: A typo in an attribute\nwhere:\n  orders_cuont: {at_least: 2}\n"
    )
    _rename(root / "data" / "customers.csv", "C000003", SCRIPT_NAME)
    project = Project.load(root)
    summary = run_campaign(project, load_campaigns(project.prefect_file)["vip-thanks"], as_of=AS_OF)
    assert summary.sent > 0
    outbox = project.outbox_dir / "vip-thanks" / summary.occurrence
    sent_to = sorted(p.stem for p in outbox.glob("*.eml"))[0]
    run_journey(project, load_journeys(project.prefect_file)["win-back-series"], as_of=AS_OF)
    saved = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        app = create_app(project)
    finally:
        if saved is None:
            os.environ.pop(PASSWORD_ENV)
        else:
            os.environ[PASSWORD_ENV] = saved
    screens = root / "screenshots"
    screens.mkdir()
    with serving(app) as base:
        yield Shop(project, base, screens, sent_to, "C000003")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def _wait_for(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def _sign_in(driver: Any, shop: Shop) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{shop.base}/console/")
    field = _wait_for(driver, "input[name=password]")
    assert "/console/login" in driver.current_url
    field.send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    _wait_for(driver, "section.card")


def _problems(driver: Any) -> list[str]:
    """The browser console's errors and warnings since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises


def _pages(shop: Shop) -> dict[str, tuple[str, str]]:
    """name → (path with query, an element the page must show)."""
    at = {"as_of": WHEN}
    preview = {"template": "vip_thanks", "customer": shop.sent_to, "campaign": "vip-thanks"}
    return {
        "overview": ("/console/", "section#vip-thanks table"),
        "segments": (f"/console/segments?{urlencode(at)}", "table a[href*='/segments/lapsed']"),
        "segment": (f"/console/segments/lapsed?{urlencode(at)}", "#member-count"),
        "segment-error": (f"/console/segments/typo?{urlencode(at)}", "#segment-error"),
        "customer-search": (f"/console/customers?{urlencode({'q': 'a'})}", "table"),
        "customer": (f"/console/customers/{shop.sent_to}?{urlencode(at)}", "#messages"),
        "preview": (f"/console/preview?{urlencode({**preview, **at})}", "iframe.rendered"),
        "dry-run": (f"/console/campaigns/vip-thanks/dry-run?{urlencode(at)}", "#dry-run-counts"),
        "journey": (f"/console/journeys/win-back-series?{urlencode(at)}", "#funnel"),
        "report": (f"/console/report?{urlencode(at)}", "img[alt^='Monthly cohort']"),
    }


def test_every_page_loads_without_a_console_error(shop: Shop, browser: Any) -> None:
    _sign_in(browser, shop)
    _problems(browser)
    for name, (path, shown) in _pages(shop).items():
        browser.get(shop.base + path)
        _wait_for(browser, shown)
        assert _problems(browser) == [], name
        assert browser.save_screenshot(str(shop.screens / f"{name}.png")), name
    assert sorted(p.stem for p in shop.screens.glob("*.png")) == sorted(_pages(shop))
    text = browser.find_element("css selector", "body").text
    assert "what the emails did" in text


def test_the_preview_shows_what_the_outbox_holds(shop: Shop, browser: Any) -> None:
    _sign_in(browser, shop)
    eml = next((shop.project.outbox_dir / "vip-thanks").rglob(f"{shop.sent_to}.eml"))
    sent = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html = sent.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    browser.get("data:text/html;base64," + base64.b64encode(html.encode()).decode())
    outbox_text = browser.find_element("css selector", "body").text
    assert outbox_text.strip()

    path, shown = _pages(shop)["preview"]
    browser.get(shop.base + path)
    frame = _wait_for(browser, shown)
    subject = browser.find_element("css selector", "dd.subject").text
    assert subject == str(sent["Subject"])
    browser.switch_to.frame(frame)
    preview_text = _wait_for(browser, "body").text
    browser.switch_to.default_content()
    assert preview_text == outbox_text
    assert _problems(browser) == []


def test_a_customer_named_like_a_script_stays_text(shop: Shop, browser: Any) -> None:
    _sign_in(browser, shop)
    at = urlencode({"as_of": WHEN})
    browser.get(f"{shop.base}/console/customers/{shop.scripted}?{at}")
    name = _wait_for(browser, "#customer-name")
    assert SCRIPT_NAME in name.text
    _no_alert(browser)
    assert browser.find_elements("css selector", "script") == []
    query = urlencode(
        {"template": "vip_thanks", "customer": shop.scripted, "locale": "en", "as_of": WHEN}
    )
    browser.get(f"{shop.base}/console/preview?{query}")
    frame = _wait_for(browser, "iframe.rendered")
    _no_alert(browser)
    browser.switch_to.frame(frame)
    assert f"Dear {SCRIPT_NAME}," in _wait_for(browser, "body").text
    assert browser.find_elements("css selector", "script") == []
    browser.switch_to.default_content()
    browser.get(f"{shop.base}/console/customers?{urlencode({'q': shop.scripted})}")
    _wait_for(browser, "#customer-name")  # one exact match goes to the customer's page
    _no_alert(browser)
    assert _problems(browser) == []


def test_without_signing_in_every_page_leads_to_the_form(shop: Shop, browser: Any) -> None:
    for name, (path, _) in _pages(shop).items():
        browser.get(shop.base + path)
        _wait_for(browser, "input[name=password]")
        assert "/console/login?next=" in browser.current_url, name
    assert browser.save_screenshot(str(shop.screens / "login.png"))
    token = make_token(
        signing_key(shop.project.state_dir, allow_local=True), shop.sent_to, "vip-thanks"
    )
    browser.get(f"{shop.base}/unsubscribe/{token}")
    button = _wait_for(browser, "button[name=confirm]")
    button.click()
    _wait_for(browser, "h1")
    assert "You are unsubscribed" in browser.find_element("css selector", "h1").text
