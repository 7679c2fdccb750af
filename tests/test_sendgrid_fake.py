"""Tests of the local SendGrid stand-in (tests/fakes/sendgrid_standin), as its clients see it."""

from __future__ import annotations

import copy
import http.client
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fakes.sendgrid_standin import (
    MAX_BODY_BYTES,
    FaultConfig,
    SendGridStandIn,
    validate_mail_send,
)
from fakes.sendgrid_standin.rules import rule_errors
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from python_http_client.exceptions import (
    BadRequestsError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

ROOT = Path(__file__).resolve().parents[1]
KEY = "SG.test"
SHARED_SCHEMA = ROOT.parent / "shared/sendgrid/mail_send_request.patched.schema.json"
VENDORED_SCHEMA = ROOT / "tests/fakes/sendgrid_standin/mail_send_request.patched.schema.json"
Response = tuple[int, dict[str, str], bytes]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib (used by the official client) honours HTTP_PROXY; keep loopback direct.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def sg() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_keys={KEY}, forbidden_keys={"SG.unverified"}, seed=1) as standin:
        yield standin


def valid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ann@example.com", "name": "Ann"}]}],
        "from": {"email": "shop@example.com", "name": "Shop"},
        "subject": "Hello",
        "content": [
            {"type": "text/plain", "value": "Hi Ann"},
            {"type": "text/html", "value": "<p>Hi Ann</p>"},
        ],
    }
    body.update(overrides)
    return body


HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def call(
    sg: SendGridStandIn,
    path: str = "/v3/mail/send",
    body: Any = None,
    *,
    method: str = "POST",
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request on a fresh connection; returns (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
    try:
        sent = {"Content-Type": "application/json"}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        sent.update(headers or {})
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def official_client(sg: SendGridStandIn, key: str = KEY) -> SendGridAPIClient:
    client = SendGridAPIClient(key, host=sg.url)
    client.client.timeout = 10  # the official client has no timeout by default
    return client


def errors_of(raw: bytes) -> list[dict[str, Any]]:
    payload = json.loads(raw)
    assert set(payload) == {"errors"}
    errors: list[dict[str, Any]] = payload["errors"]
    assert errors
    for err in errors:
        assert set(err) == {"message", "field", "help"}
        assert isinstance(err["message"], str)
        assert err["message"]
    return errors


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        pause.wait(0.01)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


# --- the official client -----------------------------------------------------------------------


def test_official_client_message_is_accepted_and_counted(sg: SendGridStandIn) -> None:
    client = official_client(sg)
    mail = Mail(
        from_email="shop@example.com",
        to_emails="Ann@Example.com",
        subject="Hello",
        plain_text_content="Hi",
        html_content="<p>Hi</p>",
    )
    first = client.send(mail)
    second = client.send(mail)

    assert first.status_code == 202
    assert first.body == b""
    ids = [first.headers.get("X-Message-Id"), second.headers.get("X-Message-Id")]
    assert all(ids)
    assert ids[0] != ids[1]
    accepted = sg.accepted()
    assert [m.message_id for m in accepted] == ids
    assert accepted[0].body == mail.get()
    assert accepted[0].api_key == KEY
    assert accepted[0].headers["user-agent"].startswith("sendgrid/")
    assert "authorization" not in accepted[0].headers
    assert sg.deliveries_per_recipient() == {"ann@example.com": 2}
    assert sg.status_counts() == {202: 2}


def test_official_client_wrong_key_gets_401(sg: SendGridStandIn) -> None:
    mail = Mail("shop@example.com", "ann@example.com", "Hello", "Hi")
    with pytest.raises(UnauthorizedError) as info:
        official_client(sg, key="SG.wrong").send(mail)

    assert info.value.status_code == 401
    [err] = errors_of(info.value.body)
    assert err["field"] is None
    assert "invalid" in err["message"]
    assert sg.accepted() == []


def test_official_client_sees_400_with_field(sg: SendGridStandIn) -> None:
    body = valid_body(categories=[f"c{i}" for i in range(11)])
    with pytest.raises(BadRequestsError) as info:
        official_client(sg).client.mail.send.post(request_body=body)

    assert info.value.status_code == 400
    assert [e["field"] for e in errors_of(info.value.body)] == ["categories"]


def test_missing_authorization_gets_401(sg: SendGridStandIn) -> None:
    status, _, raw = call(sg, body=valid_body(), key=None)

    assert status == 401
    assert errors_of(raw)[0]["message"] == "authorization required"
    assert sg.accepted() == []


def test_forbidden_key_gets_403_and_records_nothing(sg: SendGridStandIn) -> None:
    status, _, raw = call(sg, body=valid_body(), key="SG.unverified")

    assert status == 403
    assert errors_of(raw)[0]["field"] == "from"
    assert sg.accepted() == []


# --- validation ---------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], object]


def _set(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return mutate


def _delete(name: str) -> Mutation:
    return lambda body: body.pop(name)


def _reverse_content(body: dict[str, Any]) -> None:
    body["content"].reverse()


INVALID_BODIES: list[tuple[str, Mutation, str]] = [
    ("html_before_plain", _reverse_content, "content"),
    ("missing_content", _delete("content"), "content"),
    ("missing_subject", _delete("subject"), "subject"),
    ("missing_from", _delete("from"), "from"),
    ("no_personalizations", _set("personalizations", []), "personalizations"),
    ("empty_to", _set("personalizations.0.to", []), "personalizations.0.to"),
    (
        "duplicate_to_cc",
        _set("personalizations.0.cc", [{"email": "ANN@example.com"}]),
        "personalizations.0.cc.0.email",
    ),
    (
        "too_many_recipients",
        _set("personalizations.0.bcc", [{"email": f"b{i}@example.com"} for i in range(1000)]),
        "personalizations",
    ),
    (
        "email_without_at",
        _set("personalizations.0.to.0.email", "ann"),
        "personalizations.0.to.0.email",
    ),
    ("reserved_header", _set("headers", {"reply-TO": "x@example.com"}), "headers.reply-TO"),
    (
        "reserved_header_in_personalization",
        _set("personalizations.0.headers", {"Subject": "x"}),
        "personalizations.0.headers.Subject",
    ),
    ("header_name_with_colon", _set("headers", {"X:Y": "1"}), "headers.X:Y"),
    (
        "crlf_in_header",
        _set("headers", {"X-Campaign": "a\r\nBcc: x@evil.test"}),
        "headers.X-Campaign",
    ),
    ("lf_in_header", _set("headers", {"X-Campaign": "a\nb"}), "headers.X-Campaign"),
    ("header_not_string", _set("headers", {"X-Count": 5}), "headers.X-Count"),
    ("eleven_categories", _set("categories", [f"c{i}" for i in range(11)]), "categories"),
    ("non_ascii_category", _set("categories", ["café"]), "categories.0"),
    ("empty_custom_arg", _set("custom_args", {"campaign": ""}), "custom_args.campaign"),
    (
        "custom_args_too_big",
        _set("personalizations.0.custom_args", {"k": "x" * 10_001}),
        "personalizations.0.custom_args",
    ),
    (
        "substitutions_too_big",
        _set("personalizations.0.substitutions", {"-k-": "x" * 10_001}),
        "personalizations.0.substitutions",
    ),
    ("send_at_too_far", _set("send_at", int(time.time()) + 73 * 3600), "send_at"),
    ("send_at_not_integer", _set("send_at", "tomorrow"), "send_at"),
    (
        "float_send_at_too_far",
        _set("personalizations.0.send_at", time.time() // 1 + 73 * 3600.0),
        "personalizations.0.send_at",
    ),
    ("reply_to_and_list", _set("reply_to_list", [{"email": "r@example.com"}]), "reply_to_list"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [c[1:] for c in INVALID_BODIES], ids=[c[0] for c in INVALID_BODIES]
)
def test_invalid_body_gets_400_naming_the_field(
    sg: SendGridStandIn, mutate: Mutation, field: str
) -> None:
    body = valid_body(reply_to={"email": "help@example.com"})
    mutate(body)

    status, _, raw = call(sg, body=body)

    assert status == 400
    assert field in [e["field"] for e in errors_of(raw)]
    assert sg.accepted() == []
    assert sg.status_counts() == {400: 1}


VALID_VARIANTS: list[tuple[str, Mutation]] = [
    ("template_without_content", lambda b: (b.pop("content"), b.update(template_id="d-1"))),
    ("plain_only", _set("content", [{"type": "text/plain", "value": "x"}])),
    (
        "html_then_other",
        _set(
            "content",
            [{"type": "text/html", "value": "x"}, {"type": "text/calendar", "value": "y"}],
        ),
    ),
    ("send_at_within_72h", _set("send_at", int(time.time()) + 71 * 3600)),
    ("ten_categories", _set("categories", [f"c{i}" for i in range(10)])),
    (
        "custom_header",
        _set("headers", {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@x.com>"}),
    ),
    ("custom_args", _set("custom_args", {"campaign": "spring", "step": "1"})),
    ("cc_other_address", _set("personalizations.0.cc", [{"email": "bob@example.com"}])),
    (
        "subject_per_personalization",
        lambda b: (b.pop("subject"), b["personalizations"][0].update(subject="S")),
    ),
    (
        "substitutions",
        _set("personalizations.0.substitutions", {"-name-": "Ann", "-code-": "X1"}),
    ),
]


@pytest.mark.parametrize(
    "mutate", [c[1] for c in VALID_VARIANTS], ids=[c[0] for c in VALID_VARIANTS]
)
def test_valid_variants_are_accepted(sg: SendGridStandIn, mutate: Mutation) -> None:
    body = valid_body()
    mutate(body)

    status, headers, raw = call(sg, body=body)

    assert (status, raw) == (202, b"")
    assert headers["x-message-id"]
    assert [m.body for m in sg.accepted()] == [body]


@pytest.mark.parametrize(
    ("payload", "content_type", "status"),
    [
        (b'{"personalizations": [', "application/json", 400),
        (b'{"send_at": NaN}', "application/json", 400),
        (b"\xff\xfe\xfa", "application/json", 400),
        (b"[]", "application/json", 400),
        (json.dumps(valid_body()).encode(), "text/plain", 415),
    ],
    ids=["truncated_json", "nan", "not_utf8", "not_an_object", "wrong_content_type"],
)
def test_unparseable_body(
    sg: SendGridStandIn, payload: bytes, content_type: str, status: int
) -> None:
    got, _, raw = call(sg, body=payload, headers={"Content-Type": content_type})

    assert got == status
    assert errors_of(raw)[0]["field"] is None
    assert sg.accepted() == []


def test_body_too_large_gets_413_and_keeps_the_connection_usable() -> None:
    assert MAX_BODY_BYTES == 30 * 1024 * 1024
    with SendGridStandIn(KEY, max_body_bytes=2_000) as sg:
        big = valid_body(content=[{"type": "text/plain", "value": "x" * 3_000}])
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
        try:
            conn.request("POST", "/v3/mail/send", body=json.dumps(big), headers=HEADERS)
            resp = conn.getresponse()
            first = (resp.status, resp.read())
            sock = conn.sock
            conn.request("POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=HEADERS)
            resp = conn.getresponse()
            second = (resp.status, resp.read())
            assert conn.sock is sock  # the same connection
        finally:
            conn.close()

        assert first[0] == 413
        assert errors_of(first[1])[0]["field"] is None
        assert second == (202, b"")
        assert len(sg.accepted()) == 1


def test_sandbox_mode_answers_200_and_delivers_nothing(sg: SendGridStandIn) -> None:
    body = valid_body(mail_settings={"sandbox_mode": {"enable": True}})

    status, headers, raw = call(sg, body=body)

    assert (status, raw) == (200, b"")
    assert headers["x-message-id"]
    assert sg.accepted() == []
    assert sg.deliveries_per_recipient() == {}
    assert [m.body for m in sg.sandboxed()] == [body]
    assert [d.body["subject"] for d in sg.deliveries(sandbox=True)] == ["Hello"]


def test_deliveries_count_every_personalization_case_insensitively(sg: SendGridStandIn) -> None:
    body = valid_body(
        personalizations=[
            {"to": [{"email": "Ann@Example.com"}], "cc": [{"email": "cc@example.com"}]},
            {"to": [{"email": "ann@EXAMPLE.com"}, {"email": "bob@example.com"}]},
        ]
    )

    assert call(sg, body=body)[0] == 202
    assert sg.deliveries_per_recipient() == {"ann@example.com": 2, "bob@example.com": 1}
    assert sg.deliveries_per_recipient(include_cc_bcc=True)["cc@example.com"] == 1


def test_deliveries_are_what_sendgrid_makes_of_each_personalization(sg: SendGridStandIn) -> None:
    body = valid_body(
        subject="Hi -name-",
        content=[
            {"type": "text/plain", "value": "Dear -name-, code -code-"},
            {"type": "text/html", "value": "<p>Dear -name-</p>"},
        ],
        headers={"X-Campaign": "spring"},
        custom_args={"campaign": "spring"},
        personalizations=[
            {
                "to": [{"email": "ann@example.com"}],
                "substitutions": {"-name-": "Ann", "-code-": "A1"},
                "custom_args": {"customer": "1"},
            },
            {
                "to": [{"email": "bob@example.com"}],
                "subject": "Bob, -name-",
                "substitutions": {"-name-": "Bob", "-code-": "B2"},
                "headers": {"X-Campaign": "own"},
            },
        ],
    )

    status, headers, _ = call(sg, body=body)
    ann, bob = sg.deliveries()

    assert status == 202
    assert ann.message_id == bob.message_id == headers["x-message-id"]
    assert ann.body["subject"] == "Hi Ann"
    assert [p["value"] for p in ann.body["content"]] == ["Dear Ann, code A1", "<p>Dear Ann</p>"]
    assert ann.body["custom_args"] == {"campaign": "spring", "customer": "1"}
    assert ann.body["personalizations"] == [{"to": [{"email": "ann@example.com"}]}]
    assert bob.body["subject"] == "Bob, Bob"
    assert bob.body["headers"] == {"X-Campaign": "own"}
    assert [p["value"] for p in bob.body["content"]] == ["Dear Bob, code B2", "<p>Dear Bob</p>"]


def test_without_content_records_bodies_without_parts_but_validates_them_whole() -> None:
    with SendGridStandIn(KEY, keep_content=False) as sg:
        pers = {"to": [{"email": "ann@example.com"}], "substitutions": {"-n-": "Ann"}}
        accepted = call(sg, body=valid_body(personalizations=[pers]))[0]
        html_first = valid_body(content=list(reversed(valid_body()["content"])))
        rejected = call(sg, body=html_first)[0]

        assert (accepted, rejected) == (202, 400)
        [message] = sg.accepted()
        assert "content" not in message.body
        assert message.body["personalizations"] == [{"to": [{"email": "ann@example.com"}]}]
        assert message.body["subject"] == "Hello"
        assert sg.deliveries_per_recipient() == {"ann@example.com": 1}


def test_reset_forgets_records_and_counters(sg: SendGridStandIn) -> None:
    call(sg, body=valid_body())
    call(sg, body={}, key=KEY)

    assert sg.status_counts() == {202: 1, 400: 1}
    sg.reset()

    assert sg.accepted() == []
    assert sg.status_counts() == {}
    assert sg.deliveries_per_recipient() == {}


# --- faults -------------------------------------------------------------------------------------


def test_429_carries_rate_limit_headers_and_records_nothing() -> None:
    faults = FaultConfig(rate_429=1.0, rate_limit_limit=321, rate_limit_reset_s=2.0)
    with SendGridStandIn(KEY, faults=faults, seed=1) as sg:
        before = time.time()
        status, headers, raw = call(sg, body=valid_body())

        assert status == 429
        assert headers["x-ratelimit-limit"] == "321"
        assert headers["x-ratelimit-remaining"] == "0"
        assert before + 2.0 <= int(headers["x-ratelimit-reset"]) <= time.time() + 3.0
        assert errors_of(raw)[0]["message"] == "too many requests"
        assert sg.accepted() == []
        assert sg.status_counts() == {429: 1}


def test_official_client_sees_429_as_too_many_requests() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_429=1.0)) as sg:
        with pytest.raises(TooManyRequestsError) as info:
            official_client(sg).send(Mail("shop@example.com", "ann@example.com", "Hello", "Hi"))

        assert int(info.value.headers["X-RateLimit-Reset"]) > time.time()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_at_rate_one(status: int) -> None:
    faults = FaultConfig(**{f"rate_{status}": 1.0})  # type: ignore[arg-type]
    with SendGridStandIn(KEY, faults=faults) as sg:
        got = [call(sg, body=valid_body())[0] for _ in range(3)]

        assert got == [status] * 3
        assert sg.accepted() == []


def test_faults_can_change_while_running() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_503=1.0)) as sg:
        assert call(sg, body=valid_body())[0] == 503
        sg.update_faults(rate_503=0.0)
        assert call(sg, body=valid_body())[0] == 202
        sg.set_faults(FaultConfig(rate_429=1.0))
        assert call(sg, body=valid_body())[0] == 429
        assert sg.faults == FaultConfig(rate_429=1.0)
        assert len(sg.accepted()) == 1


def test_faults_are_deterministic_for_a_seed() -> None:
    faults = FaultConfig(rate_429=0.3, rate_500=0.2)

    def statuses(seed: int) -> list[int]:
        with SendGridStandIn(KEY, faults=faults, seed=seed) as sg:
            first = [call(sg, body=valid_body())[0] for _ in range(20)]
            sg.reset()
            again = [call(sg, body=valid_body())[0] for _ in range(20)]
            assert again == first  # reset() re-seeds
            return first

    seven = statuses(7)
    assert statuses(7) == seven
    assert statuses(8) != seven
    assert {202, 429, 500} <= set(seven)


def test_slow_responses_are_delayed() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_slow=1.0, slow_delay_s=0.5)) as sg:
        start = time.monotonic()
        status = call(sg, body=valid_body())[0]
        slow = time.monotonic() - start
        sg.update_faults(rate_slow=0.0)
        start = time.monotonic()
        call(sg, body=valid_body())
        fast = time.monotonic() - start

    assert status == 202
    assert slow >= 0.5
    assert fast < 0.4


@pytest.mark.slow
def test_a_slow_answer_holds_up_no_other_connection() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_delay_s=2.0)
    with SendGridStandIn(KEY, faults=faults) as sg:
        slow: list[float] = []

        def slow_call() -> None:
            started = time.monotonic()
            call(sg, body=valid_body())
            slow.append(time.monotonic() - started)

        worker = threading.Thread(target=slow_call)
        worker.start()
        wait_until(lambda: len(sg.accepted()) == 1)  # recorded; its reply is being held
        sg.update_faults(rate_slow=0.0)
        started = time.monotonic()
        quick = call(sg, body=valid_body())[0]
        quick_s = time.monotonic() - started
        still_waiting = worker.is_alive()
        worker.join()

    assert quick == 202
    assert still_waiting
    assert quick_s < 1.0
    assert slow[0] >= 2.0


def test_a_connection_idle_between_requests_is_closed_after_the_idle_timeout() -> None:
    with SendGridStandIn(KEY, idle_timeout_s=0.3) as sg:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
        try:
            conn.request("POST", "/v3/mail/send", json.dumps(valid_body()).encode(), HEADERS)
            assert conn.getresponse().read() == b""  # 202, kept alive
            assert conn.sock is not None
            started = time.monotonic()
            assert closed_by_server(conn.sock, within=3.0)
            assert time.monotonic() - started >= 0.25
        finally:
            conn.close()
        assert len(sg.accepted()) == 1


def test_an_answer_slower_than_the_idle_timeout_is_not_cut_off() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_delay_s=0.6)
    with SendGridStandIn(KEY, idle_timeout_s=0.2, faults=faults) as sg:
        assert call(sg, body=valid_body())[0] == 202
        assert len(sg.accepted()) == 1


def test_a_drop_is_a_disconnect_without_reply_to_httpx_and_records_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_drop=1.0)) as sg:
        with httpx.Client(base_url=sg.url, timeout=10) as client:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                client.post("/v3/mail/send", json=valid_body(), headers=HEADERS)
            sg.update_faults(rate_drop=0.0)
            after = client.post("/v3/mail/send", json=valid_body(), headers=HEADERS)

        assert after.status_code == 202
        assert len(sg.accepted()) == 1  # only the request after the drop
        assert sg.dropped_connections() == 1
        assert sg.status_counts() == {202: 1}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_drop_is_a_remote_disconnect_to_http_client() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_drop=1.0)) as sg:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
        try:
            conn.request("POST", "/v3/mail/send", json.dumps(valid_body()), HEADERS)
            with pytest.raises(http.client.RemoteDisconnected):
                conn.getresponse()
        finally:
            conn.close()

        assert sg.accepted() == []
        assert sg.dropped_connections() == 1


def test_dropped_connection_is_a_connection_error_to_the_official_client() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_drop=1.0)) as sg:
        mail = Mail("shop@example.com", "ann@example.com", "Hello", "Hi")
        with pytest.raises(ConnectionError):
            official_client(sg).send(mail)

        assert sg.accepted() == []
        assert sg.dropped_connections() == 1
        assert sg.status_counts() == {}


def test_accept_then_drop_records_the_message() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_accept_drop=1.0)) as sg:
        with (
            httpx.Client(base_url=sg.url, timeout=10) as client,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            client.post("/v3/mail/send", json=valid_body(), headers=HEADERS)

        [message] = sg.accepted()
        assert message.connection_dropped
        assert sg.deliveries_per_recipient() == {"ann@example.com": 1}
        assert sg.dropped_connections() == 1
        assert sg.status_counts() == {}


def test_accept_then_drop_does_not_apply_to_invalid_bodies() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_accept_drop=1.0)) as sg:
        assert call(sg, body=valid_body(subject=""))[0] == 400
        assert sg.accepted() == []
        assert sg.dropped_connections() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_429": 1.5},
        {"rate_slow": -0.1},
        {"rate_500": 0.6, "rate_503": 0.6},
        {"slow_delay_s": -1},
        {"rate_limit_limit": 0},
    ],
)
def test_fault_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)


def test_fault_outcomes_split_the_unit_interval_in_order() -> None:
    faults = FaultConfig(rate_drop=0.1, rate_accept_drop=0.1, rate_429=0.1, rate_500=0.1)
    draws = [0.05, 0.15, 0.25, 0.35, 0.45, 0.95]

    assert [faults.outcome(u) for u in draws] == ["drop", "accept_drop", "429", "500", "ok", "ok"]


# --- HTTP behaviour -------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(sg: SendGridStandIn) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
    try:
        statuses = []
        conn.connect()
        sock = conn.sock
        for _ in range(5):
            conn.request("POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=HEADERS)
            resp = conn.getresponse()
            statuses.append((resp.status, resp.read()))
            assert conn.sock is sock  # the same TCP connection was reused
        conn.request(
            "POST",
            "/v3/mail/send",
            body=json.dumps(valid_body()),
            headers={**HEADERS, "Connection": "close"},
        )
        resp = conn.getresponse()
        last = (resp.status, resp.read(), resp.getheader("Connection"))
    finally:
        conn.close()

    assert statuses == [(202, b"")] * 5
    assert last == (202, b"", "close")
    assert len(sg.accepted()) == 6


def test_concurrent_clients_get_unique_message_ids(sg: SendGridStandIn) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=sg.url, timeout=10) as client:
            for _ in range(25):
                resp = client.post("/v3/mail/send", json=valid_body(), headers=HEADERS)
                with lock:
                    ids.append(resp.headers.get("X-Message-Id", ""))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(set(ids)) == 100
    assert "" not in ids
    assert sorted(m.message_id for m in sg.accepted()) == sorted(ids)
    assert sg.deliveries_per_recipient() == {"ann@example.com": 100}


def test_unknown_route_and_wrong_method(sg: SendGridStandIn) -> None:
    assert call(sg, "/v3/nope", method="GET")[0] == 404
    assert call(sg, "/v3/mail/send", method="GET")[0] == 405
    assert call(sg, "/v3/suppression/bounces", body={}, method="POST")[0] == 405
    assert call(sg, "/v3/suppression/nope", method="GET")[0] == 404
    assert sg.status_counts() == {404: 2, 405: 2}


def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    standin = SendGridStandIn(KEY)
    assert not standin.running
    with standin:
        assert standin.running
        with pytest.raises(RuntimeError):
            standin.start()
    assert not standin.running
    standin.stop()
    assert not standin.running
    with pytest.raises(RuntimeError):
        _ = standin.port


def test_a_port_in_use_is_refused_at_start() -> None:
    with SendGridStandIn(KEY) as first:
        second = SendGridStandIn(KEY, port=first.port)
        with pytest.raises(OSError):
            second.start()
        assert not second.running
        assert call(first, body=valid_body())[0] == 202


def test_context_manager_frees_the_port_even_with_an_idle_connection() -> None:
    conn = http.client.HTTPConnection("127.0.0.1", timeout=10)
    try:
        with SendGridStandIn(KEY) as sg:
            port = sg.port
            assert sg.url == f"http://127.0.0.1:{port}"
            assert sg.host == "127.0.0.1"
            conn.port = port
            conn.request(
                "GET", "/v3/suppression/bounces", headers={"Authorization": f"Bearer {KEY}"}
            )
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"[]")
            idle = conn.sock  # kept alive, now idle
            assert idle is not None
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        assert closed_by_server(idle, within=2.0)
    finally:
        conn.close()

    with pytest.raises(RuntimeError):
        _ = sg.url
    probe = socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    with SendGridStandIn(KEY, port=port) as again:
        assert again.port == port
        assert call(again, body=valid_body())[0] == 202


# --- suppressions -------------------------------------------------------------------------------


def test_suppressions_are_paged(sg: SendGridStandIn) -> None:
    for i in range(7):
        sg.add_suppression("unsubscribes", f"u{i}@example.com", created=1_700_000_000 + i)

    def page(query: str) -> list[str]:
        status, _, raw = call(sg, f"/v3/suppression/unsubscribes{query}", method="GET")
        assert status == 200
        entries = json.loads(raw)
        assert all(set(e) == {"created", "email"} for e in entries)
        return [e["email"] for e in entries]

    assert page("?limit=3&offset=0") == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert page("?limit=3&offset=3") == ["u3@example.com", "u4@example.com", "u5@example.com"]
    assert page("?limit=3&offset=6") == ["u6@example.com"]
    assert page("?offset=9") == []
    assert len(page("")) == 7
    assert page("?start_time=1700000005") == ["u5@example.com", "u6@example.com"]
    assert page("?end_time=1700000001") == ["u0@example.com", "u1@example.com"]
    for query, field in [("?limit=501", "limit"), ("?offset=x", "offset")]:
        status, _, raw = call(sg, f"/v3/suppression/unsubscribes{query}", method="GET")
        assert status == 400
        assert errors_of(raw)[0]["field"] == field


def test_suppression_lists_and_groups(sg: SendGridStandIn) -> None:
    sg.add_suppression(
        "bounces", "b@example.com", created=1, reason="550 no such user", status="5.1.1"
    )
    sg.add_suppression("spam_reports", "s@example.com", created=2)
    sg.add_suppression("asm_group", "g1@example.com", group_id=42)
    sg.add_suppression("asm_group", "g2@example.com", group_id=42)
    sg.add_suppression("asm_group", "other@example.com", group_id=43)

    client = official_client(sg).client
    bounces = json.loads(client.suppression.bounces.get().body)
    spam = json.loads(client.suppression.spam_reports.get(query_params={"limit": 10}).body)
    group = json.loads(client.asm.groups._("42").suppressions.get().body)

    assert bounces == [
        {"created": 1, "email": "b@example.com", "reason": "550 no such user", "status": "5.1.1"}
    ]
    assert spam == [{"created": 2, "email": "s@example.com", "ip": "127.0.0.1"}]
    assert group == ["g1@example.com", "g2@example.com"]
    assert call(sg, "/v3/asm/groups/7/suppressions", method="GET")[2] == b"[]"
    assert call(sg, "/v3/asm/groups/x/suppressions", method="GET")[0] == 404
    assert call(sg, "/v3/suppression/bounces", method="GET", key=None)[0] == 401
    with pytest.raises(ValueError):
        sg.add_suppression("asm_group", "x@example.com")
    sg.clear_suppressions()
    assert call(sg, "/v3/suppression/bounces", method="GET")[2] == b"[]"


def test_faults_reach_suppressions_only_when_asked(sg: SendGridStandIn) -> None:
    sg.set_faults(FaultConfig(rate_503=1.0))
    assert call(sg, "/v3/suppression/bounces", method="GET")[0] == 200
    sg.update_faults(affect_suppressions=True)
    assert call(sg, "/v3/suppression/bounces", method="GET")[0] == 503
    sg.set_faults(FaultConfig(rate_accept_drop=1.0, affect_suppressions=True))
    with (
        httpx.Client(base_url=sg.url, timeout=10) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get("/v3/suppression/bounces", headers=HEADERS)
    assert sg.dropped_connections() == 1


# --- command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_command_line_prints_its_url_serves_and_writes_its_report(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    report_file = tmp_path / "report.json"
    args = [
        "--port",
        "0",
        "--key",
        "SG.cli",
        "--forbidden-key",
        "SG.no",
        "--report",
        str(report_file),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakes.sendgrid_standin", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "the stand-in printed no URL"
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as client:
            sent = [
                client.post(
                    "/v3/mail/send", json=valid_body(), headers={"Authorization": f"Bearer {key}"}
                ).status_code
                for key in ("SG.cli", "SG.cli", "SG.no", "SG.wrong")
            ]
        assert sent == [202, 202, 403, 401]
    finally:
        proc.send_signal(stop_signal)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err

    saw = json.loads(report_file.read_text(encoding="utf-8"))
    assert saw["accepted"] == 2
    assert saw["deliveries"] == 2
    assert saw["statuses"] == {"202": 2, "401": 1, "403": 1}
    assert saw["recipients_more_than_once"] == ["ann@example.com"]
    assert saw["dropped_connections"] == 0
    assert saw["cpu_seconds"] > 0


def test_command_line_rejects_bad_fault_rates() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run(
        [sys.executable, "-m", "fakes.sendgrid_standin", "--rate-429", "2"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert b"rate_429 must be between 0 and 1" in done.stderr


# --- the schema ---------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason="shared SendGrid schema not available")
def test_vendored_schema_is_a_byte_copy_of_the_shared_one() -> None:
    assert VENDORED_SCHEMA.read_bytes() == SHARED_SCHEMA.read_bytes()


# Property: validate_mail_send and a plain jsonschema validator of the published schema
# agree on bodies the extra rules leave alone. Bodies are generated valid and rule-abiding,
# then get 0-3 random edits (replace a value, delete a key, duplicate or drop a list item).
NOW = 1_800_000_000
_reference = jsonschema.Draft7Validator(
    json.loads((SHARED_SCHEMA if SHARED_SCHEMA.exists() else VENDORED_SCHEMA).read_text()),
    format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3)
    | st.sampled_from(["", "no-at", "a@b", "d" * 255, "d" * 256, "ab", "i" * 65, 1.0, 2**40]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=5,
)
_text = st.text(max_size=4)
_nonempty = st.text(min_size=1, max_size=4)
_ADDRESSES = ["a@x.com", "B@y.org", "c@z.net", "d@x.com", "e@y.org", "f@z.net"]
_address = st.fixed_dictionaries({"email": st.sampled_from(_ADDRESSES)}, optional={"name": _text})
_header_values = st.text(st.characters(exclude_characters="\r\n"), max_size=4)
_headers = st.dictionaries(st.sampled_from(["X-A", "X-Campaign", "List-Id"]), _header_values)
_args = st.dictionaries(_text, _nonempty, max_size=2)


@st.composite
def _personalization(draw: st.DrawFn) -> dict[str, Any]:
    emails = draw(st.lists(st.sampled_from(_ADDRESSES), min_size=1, max_size=5, unique=True))
    cut_to = draw(st.integers(1, len(emails)))
    cut_cc = draw(st.integers(cut_to, len(emails)))
    pers: dict[str, Any] = {"to": [{"email": e} for e in emails[:cut_to]]}
    if emails[cut_to:cut_cc]:
        pers["cc"] = [{"email": e} for e in emails[cut_to:cut_cc]]
    if emails[cut_cc:]:
        pers["bcc"] = [{"email": e} for e in emails[cut_cc:]]
    optional = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "from": _address,
                "subject": _nonempty,
                "headers": _headers,
                "substitutions": st.dictionaries(_text, _text, max_size=2),
                "custom_args": _args,
                "dynamic_template_data": st.dictionaries(_text, _json, max_size=2),
                "send_at": st.integers(0, NOW),
            },
        )
    )
    return {**pers, **optional}


_valid_bodies = st.fixed_dictionaries(
    {
        "personalizations": st.lists(_personalization(), min_size=1, max_size=2),
        "from": _address,
        "subject": _nonempty,
        "content": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text/plain", "text/html"]), "value": _nonempty}
            ),
            min_size=1,
            max_size=2,
        ).map(lambda parts: sorted(parts, key=lambda p: p["type"] != "text/plain")),
    },
    optional={
        "reply_to": _address,
        "attachments": st.lists(
            st.fixed_dictionaries(
                {"content": _nonempty, "filename": _text},
                optional={
                    "type": _nonempty,
                    "disposition": st.sampled_from(["inline", "attachment"]),
                    "content_id": _text,
                },
            ),
            max_size=2,
        ),
        "template_id": _text,
        "headers": _headers,
        "categories": st.lists(
            st.sampled_from(["a", "b", "c", "d" * 255]), max_size=4, unique=True
        ),
        "custom_args": _args,
        "send_at": st.integers(0, NOW),
        "batch_id": _text,
        "asm": st.fixed_dictionaries(
            {"group_id": st.integers(0, 9)},
            optional={"groups_to_display": st.lists(st.integers(0, 9), max_size=25)},
        ),
        "ip_pool_name": st.text(min_size=2, max_size=64),
        "mail_settings": st.fixed_dictionaries(
            {},
            optional={
                "sandbox_mode": st.fixed_dictionaries({"enable": st.booleans()}),
                "footer": st.fixed_dictionaries({"enable": st.booleans(), "text": _text}),
            },
        ),
        "tracking_settings": st.fixed_dictionaries(
            {},
            optional={
                "click_tracking": st.fixed_dictionaries({"enable": st.booleans()}),
                "ganalytics": st.fixed_dictionaries({"utm_source": _text}),
            },
        ),
    },
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(body: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(list(_paths(body))))
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    target = parent[path[-1]]
    action = data.draw(st.sampled_from(["replace", "delete", "duplicate", "drop_item"]))
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "duplicate" and isinstance(target, list) and target:
        target.append(copy.deepcopy(data.draw(st.sampled_from(target))))
    elif action == "drop_item" and isinstance(target, list) and target:
        target.pop(data.draw(st.integers(0, len(target) - 1)))
    else:
        parent[path[-1]] = data.draw(_json)


@settings(max_examples=150, deadline=None, database=None)
@given(body=_valid_bodies, data=st.data())
def test_validation_agrees_with_jsonschema_where_the_extra_rules_do_not_apply(
    body: dict[str, Any], data: st.DataObject
) -> None:
    for _ in range(data.draw(st.integers(0, 3))):
        _mutate(body, data)

    errors = validate_mail_send(body, NOW)

    valid = _reference.is_valid(body)
    event("schema-valid" if valid else "schema-invalid")
    if valid:
        assume(not rule_errors(body, NOW))
        assert errors == []
    else:
        assert errors
        assert {e.message for e in errors} <= {e.message for e in _reference.iter_errors(body)}
