"""The console over HTTP, on a real local server: the password (Basic auth and the signed
session cookie), the console off without it, the public pages untouched, the security
headers; and what its pages compute: the dry run is the run's own plan, the journey page
holds `clvflow journeys show`'s counts, a run's sample is linked from its artifact to the
console."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.run import run_campaign
from clvflow.compliance.secret import signing_key
from clvflow.compliance.unsubscribe import make_token
from clvflow.journeys.catalog import load_journeys
from clvflow.journeys.run import run_journey
from clvflow.journeys.status import journey_status
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.web.app import create_app
from clvflow.web.console.access import COOKIE, PASSWORD_ENV, Access
from clvflow.web.console.dry_run import dry_run
from clvflow.web.console.snapshot import Snapshot
from tests.browser.server import serving
from tests.conftest import AS_OF, add_win_back_campaign

PASSWORD = "correct horse battery staple"
WHEN = {"as_of": AS_OF.isoformat(sep=" ")}
PAGES = [
    "/console/",
    "/console/segments",
    "/console/segments/lapsed",
    "/console/customers?q=C000017",
    "/console/customers/C000017",
    "/console/preview?template=vip_thanks&customer=C000017",
    "/console/campaigns/vip-thanks/dry-run",
    "/console/journeys/win-back-series",
    "/console/report",
]


def _client(base: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=base, trust_env=False, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def project(demo_project: Path) -> Project:
    return Project.load(demo_project)


@pytest.fixture
def console(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with serving(create_app(project)) as base:
        yield base


def _unsubscribe_page(project: Project, base: str) -> httpx.Response:
    token = make_token(signing_key(project.state_dir, allow_local=True), "C000017", "vip-thanks")
    with _client(base) as http:
        return http.get(f"/unsubscribe/{token}")


def test_without_the_password_the_console_is_off_and_says_how_to_turn_it_on(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with serving(create_app(project)) as base, _client(base) as http:
        for path in ["/console/", "/console/segments/lapsed", "/console/login"]:
            reply = http.get(path, auth=("any", PASSWORD))
            assert reply.status_code == 503
            assert f"export {PASSWORD_ENV}=" in reply.text
        assert _unsubscribe_page(project, base).status_code == 200
        assert http.get("/healthz").json() == {"status": "ok"}


def test_every_page_needs_the_password_and_the_public_pages_do_not(
    project: Project, console: str
) -> None:
    with _client(console) as http:
        for path in PAGES:
            browser = http.get(path, headers={"Accept": "text/html"})
            assert browser.status_code == 303, path
            assert browser.headers["location"].startswith("/console/login?next=%2Fconsole%2F")
            script = http.get(path)
            assert script.status_code == 401, path
            assert script.headers["www-authenticate"].startswith("Basic ")
            assert "customer" not in script.text.lower()
            assert http.get(path, auth=("marketer", "wrong")).status_code == 401
            assert http.get(path, auth=("marketer", PASSWORD), params=WHEN).status_code == 200
        # a path under /console that matches no page is behind the door too
        assert http.get("/console/nothing/here").status_code == 401
    page = _unsubscribe_page(project, console)
    assert page.status_code == 200 and '<form method="post"' in page.text
    with _client(console) as http:  # the shop's order webhook answers as before
        assert http.post("/webhooks/orders", content=b"{}").status_code == 503


def test_sign_in_gives_a_signed_session_cookie(console: str) -> None:
    with _client(console) as http:
        wrong = http.post("/console/login", data={"password": "nope", "next": "/console/"})
        assert wrong.status_code == 401 and COOKIE not in wrong.cookies
        right = http.post(
            "/console/login", data={"password": PASSWORD, "next": "/console/segments"}
        )
        assert right.status_code == 303 and right.headers["location"] == "/console/segments"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert http.get("/console/segments", params=WHEN).status_code == 200
        forged = right.cookies[COOKIE][:-1] + ("0" if right.cookies[COOKIE][-1] != "0" else "1")
        http.cookies.set(COOKIE, forged, path="/console")
        assert http.get("/console/segments").status_code == 401
    with _client(console) as http:  # never sent elsewhere after signing in
        away = http.post("/console/login", data={"password": PASSWORD, "next": "//evil.example/"})
        assert away.headers["location"] == "/console/"
        assert http.get("/console/").status_code == 200
        out = http.post("/console/logout")
        assert out.status_code == 303 and http.get("/console/").status_code == 401


def test_sessions_expire_and_end_with_the_password() -> None:
    key = b"k" * 32
    access = Access.from_env(key, {PASSWORD_ENV: "one"})
    session = access.new_session(now=1000.0)
    assert access.session_ok(session, now=1001.0)
    assert not access.session_ok(session, now=1000.0 + 13 * 3600)
    assert not Access.from_env(key, {PASSWORD_ENV: "two"}).session_ok(session, now=1001.0)
    assert not Access.from_env(key, {}).session_ok(session, now=1001.0)
    assert access.basic_ok("Basic b246b25l")  # on:one
    assert not access.basic_ok("Basic !!!") and not access.basic_ok("Bearer one")


def test_security_headers(project: Project, console: str) -> None:
    with _client(console, auth=("m", PASSWORD)) as http:
        page = http.get("/console/customers/C000017", params=WHEN)
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        preview = http.get(
            "/console/preview", params={**WHEN, "template": "vip_thanks", "customer": "C000017"}
        )
        frames = re.findall(r"<iframe [^>]*>", preview.text)
        assert frames and all('sandbox=""' in f and "srcdoc=" in f for f in frames)
        assert "<script" not in preview.text
        login = http.get("/console/login")
        assert login.headers["x-frame-options"] == "DENY"
    unsub = _unsubscribe_page(project, console)
    assert "content-security-policy" not in unsub.headers  # public pages are left as they were


def test_the_dry_run_is_the_runs_own_plan(project: Project) -> None:
    add_win_back_campaign(project.root)
    campaigns = load_campaigns(project.prefect_file)
    # a first run sends, so the second dry run also meets the resend policy and the cap
    run_campaign(project, campaigns["vip-thanks"], as_of=AS_OF)
    snapshot = Snapshot(project, AS_OF)
    ledger = Ledger(project.ledger_url)
    try:
        for name in ("vip-thanks", "win-back"):
            ours = dry_run(snapshot, ledger, campaigns[name], sample=3)
            theirs = run_campaign(project, campaigns[name], as_of=AS_OF, dry_run=True)
            for field in ("members", "skipped", "holdout", "waiting", "planned"):
                assert getattr(ours.summary, field) == getattr(theirs, field), (name, field)
            assert ours.summary.by_variant == theirs.by_variant
            assert ours.by_locale == theirs.by_locale
            assert len(ours.recipients) == min(3, theirs.planned)
            assert all(m.error is None and m.subject for m in ours.recipients)
    finally:
        ledger.close()
        snapshot.close()


def test_the_journey_page_shows_the_journeys_standing(project: Project, console: str) -> None:
    journey = load_journeys(project.prefect_file)["win-back-series"]
    run_journey(project, journey, as_of=AS_OF)
    ledger = Ledger(project.ledger_url)
    snapshot = Snapshot(project, AS_OF)
    try:
        status = journey_status(ledger, journey, snapshot.data, "en")
    finally:
        ledger.close()
        snapshot.close()
    assert status.entries > 0
    with _client(console, auth=("m", PASSWORD)) as http:
        page = http.get("/console/journeys/win-back-series", params=WHEN).text
    assert f'<span id="entries">{status.entries:,}</span>' in page
    for step in status.steps:
        row = re.search(rf"<tr>\s*<td>{step.name}</td>(.*?)</tr>", page, re.S)
        assert row is not None, step.name
        numbers = re.findall(r'<td class="n">([^<]*)</td>', row.group(1))
        assert numbers[1:4] == [f"{step.waiting:,}", f"{step.sent:,}", f"{step.failed:,}"]
    assert "Measured since" in page and 'id="measurement"' in page


def test_a_runs_sample_links_to_its_console_page(
    project: Project, console: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clvflow.orchestration.artifacts import sample_url

    folder = project.state_dir / "samples" / "vip-thanks"
    folder.mkdir(parents=True)
    sample = folder / "0123456789ab-default.html"
    sample.write_text("<p>Dear Ann,</p><script>alert(1)</script>", encoding="utf-8")
    path = "/console/samples/vip-thanks/0123456789ab-default.html"
    # shop.unsubscribe.base_url, unless clvflow.yaml's web.base_url or CLVFLOW_WEB_URL says
    assert sample_url(str(sample)) == "https://shop.example/email" + path
    config = project.root / "clvflow.yaml"
    config.write_text(config.read_text() + "\nweb:\n  base_url: https://console.example/\n")
    assert sample_url(str(sample)) == "https://console.example" + path
    monkeypatch.setenv("CLVFLOW_WEB_URL", "http://127.0.0.1:8000")
    assert sample_url(str(sample)) == "http://127.0.0.1:8000" + path
    with _client(console, auth=("m", PASSWORD)) as http:
        shown = http.get(path)
        assert shown.status_code == 200 and "Dear Ann" in shown.text
        assert "sandbox" in shown.headers["content-security-policy"]
        assert "script-src" not in shown.headers["content-security-policy"]
        assert http.get("/console/samples/vip-thanks/..%2Fx.html").status_code == 404
        assert http.get("/console/samples/vip-thanks/other.html").status_code == 404
    with _client(console) as http:
        assert http.get(path).status_code == 401


def test_serve_prints_the_console_beside_the_prefect_ui() -> None:
    from clvflow.cli.serve import addresses, local_url

    web = local_url("0.0.0.0", 8000)
    lines = addresses("http://127.0.0.1:4200", web, console_on=True)
    assert lines[:2] == [
        "Prefect UI: http://127.0.0.1:4200",
        "console:    http://127.0.0.1:8000/console/",
    ]
    off = addresses("http://127.0.0.1:4200", web, console_on=False)[1]
    assert off.endswith(f"(off: set {PASSWORD_ENV} to turn it on)")
    assert addresses("http://127.0.0.1:4200", None, console_on=True) == [
        "Prefect UI: http://127.0.0.1:4200"
    ]


@pytest.mark.slow
@pytest.mark.prefect
def test_the_overview_links_each_run_to_its_flow_run(
    prefect_api: None, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.settings import PREFECT_API_URL

    from clvflow.orchestration.flows import campaign_flow

    campaign = load_campaigns(project.prefect_file)["vip-thanks"]
    campaign_flow(campaign="vip-thanks", spec=campaign.spec, as_of=AS_OF, project=str(project.root))

    async def flow_runs() -> list[str]:
        async with get_client() as client:
            found = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=["vip-thanks · 2026-11-23 · 2026-11-23 12:00"])
                )
            )
        return [str(r.id) for r in found]

    (run_id,) = asyncio.run(flow_runs())
    api = str(PREFECT_API_URL.value())
    monkeypatch.setenv("PREFECT_API_URL", api)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with serving(create_app(project)) as base, _client(base, auth=("m", PASSWORD)) as http:
        page = http.get("/console/").text
    ui = api.rstrip("/").removesuffix("/api")
    assert f'<a href="{ui}/runs/flow-run/{run_id}">flow run</a>' in page


AB_CAMPAIGN = """
  - name: vip-ab
    entrypoint: flows/campaign.py:campaign_flow
    parameters:
      campaign: vip-ab
      spec:
        segment: top_spenders
        template: vip_thanks
        resend: once
        variants:
          - {name: A, template: vip_thanks, weight: 1}
          - {name: B, template: points_expiry, weight: 1}
"""


def test_the_preview_shows_variants_side_by_side_and_a_journey_steps_code(
    project: Project, console: str
) -> None:
    prefect = project.prefect_file
    prefect.write_text(prefect.read_text().rstrip("\n") + "\n" + AB_CAMPAIGN)
    with _client(console, auth=("m", PASSWORD)) as http:
        ab = http.get(
            "/console/preview", params={**WHEN, "campaign": "vip-ab", "customer": "C000017"}
        ).text
        sections = re.findall(r'<section class="email" data-variant="([AB])">', ab)
        assert sections == ["A", "B"]
        assert "<dt>X-Clvflow-Variant</dt><dd>A</dd>" in ab
        assert "<dt>X-Clvflow-Variant</dt><dd>B</dd>" in ab
        assert ab.count("<iframe") == 2
        offer = http.get(
            "/console/preview",
            params={**WHEN, "campaign": "win-back-series/offer", "customer": "C000017"},
        ).text
        assert "<dt>X-Clvflow-Step</dt><dd>offer</dd>" in offer
        assert "BACK-SAMPLE" in offer  # the sample code, never one that could be redeemed
        by_email = http.get(
            "/console/preview",
            params={**WHEN, "template": "vip_thanks", "customer": "no-such-person@nowhere"},
        ).text
        assert "No customer with id or email" in by_email and "<iframe" not in by_email


def test_an_edited_segment_or_template_shows_at_once(project: Project, console: str) -> None:
    query = {**WHEN, "template": "vip_thanks", "customer": "C000017", "locale": "en"}
    with _client(console, auth=("m", PASSWORD)) as http:

        def count() -> str:
            page = http.get("/console/segments/top_spenders", params=WHEN).text
            found = re.search(r'<strong id="member-count">([^<]*)</strong>', page)
            assert found is not None
            return found.group(1)

        before = count()
        assert "A first look, just for you" in http.get("/console/preview", params=query).text
        segment = project.segments_dir / "top_spenders.yaml"
        segment.write_text(
            "description: Everyone with an order\nwhere:\n  orders_count: {at_least: 1}\n"
        )
        template = project.templates_dir / "vip_thanks.html.j2"
        template.write_text(template.read_text().replace("A first look", "An early look"))
        assert count() != before
        edited = http.get("/console/preview", params=query).text
        assert "An early look, just for you" in edited and "A first look" not in edited
