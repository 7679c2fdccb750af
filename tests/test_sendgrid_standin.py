"""Tests of the local SendGrid stand-in (clvflow.delivery.standin)."""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_http_client.exceptions import (
    BadRequestsError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail

from clvflow.delivery.standin import MAX_BODY_BYTES, FaultConfig, SendGridStandIn
from clvflow.delivery.standin_rules import (
    UnsupportedSchemaError,
    compile_fast_check,
    mail_send_fast_check,
    mail_send_validator,
)

KEY = "SG.test"
SHARED_SCHEMA = (
    Path(__file__).resolve().parents[2] / "shared/sendgrid/mail_send_request.patched.schema.json"
)
PACKAGED_SCHEMA = (
    Path(__file__).resolve().parents[1] / "src/clvflow/schemas/sendgrid_mail_send.schema.json"
)
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
        (json.dumps(valid_body()).encode(), "text/plain", 415),
    ],
    ids=["truncated_json", "nan", "not_utf8", "wrong_content_type"],
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
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            conn.request("POST", "/v3/mail/send", body=json.dumps(big), headers=headers)
            resp = conn.getresponse()
            first = (resp.status, resp.read())
            conn.request("POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=headers)
            resp = conn.getresponse()
            second = (resp.status, resp.read())
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
    with SendGridStandIn(KEY, faults=FaultConfig(rate_slow=1.0, slow_delay_s=0.3)) as sg:
        start = time.monotonic()
        status = call(sg, body=valid_body())[0]
        slow = time.monotonic() - start
        sg.update_faults(rate_slow=0.0)
        start = time.monotonic()
        call(sg, body=valid_body())
        fast = time.monotonic() - start

    assert status == 202
    assert slow >= 0.3
    assert fast < 0.3


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_connection_idle_between_requests_is_closed_after_the_idle_timeout() -> None:
    with SendGridStandIn(KEY, idle_timeout_s=0.3) as sg:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=5)
        conn.request(
            "POST",
            "/v3/mail/send",
            json.dumps(valid_body()).encode(),
            {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        assert conn.getresponse().read() == b""  # 202, kept alive
        assert conn.sock is not None
        started = time.monotonic()
        assert _closed_by_server(conn.sock, within=3.0)
        assert time.monotonic() - started >= 0.25
        conn.close()
        assert len(sg.accepted()) == 1


def test_a_request_stalled_halfway_is_closed_after_the_idle_timeout_and_records_nothing() -> None:
    with SendGridStandIn(KEY, idle_timeout_s=0.3) as sg:
        body = json.dumps(valid_body()).encode()
        head = (
            f"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", sg.port)) as sock:
            sock.sendall(head.encode() + body[:10])  # the rest never comes
            assert _closed_by_server(sock, within=3.0)
        assert sg.accepted() == []


def test_an_answer_slower_than_the_idle_timeout_is_not_cut_off() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_delay_s=0.6)
    with SendGridStandIn(KEY, idle_timeout_s=0.2, faults=faults) as sg:
        assert call(sg, body=valid_body())[0] == 202
        assert len(sg.accepted()) == 1


def test_dropped_connection_is_a_client_error_and_records_nothing() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_drop=1.0)) as sg:
        mail = Mail("shop@example.com", "ann@example.com", "Hello", "Hi")
        with pytest.raises(ConnectionError):
            official_client(sg).send(mail)

        assert sg.accepted() == []
        assert sg.dropped_connections() == 1
        assert sg.status_counts() == {}


def test_accept_then_drop_records_the_message() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_accept_drop=1.0)) as sg:
        mail = Mail("shop@example.com", "ann@example.com", "Hello", "Hi")
        with pytest.raises(ConnectionError):
            official_client(sg).send(mail)

        [message] = sg.accepted()
        assert message.connection_dropped
        assert sg.deliveries_per_recipient() == {"ann@example.com": 1}
        assert sg.dropped_connections() == 1


def test_accept_then_drop_does_not_apply_to_invalid_bodies() -> None:
    with SendGridStandIn(KEY, faults=FaultConfig(rate_accept_drop=1.0)) as sg:
        assert call(sg, body=valid_body(subject=""))[0] == 400
        assert sg.accepted() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_429": 1.5},
        {"rate_slow": -0.1},
        {"rate_500": 0.6, "rate_503": 0.6},
        {"slow_delay_s": -1},
    ],
)
def test_fault_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)


# --- HTTP behaviour -------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(sg: SendGridStandIn) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    try:
        conn.request("POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=headers)
        resp = conn.getresponse()
        results = [(resp.status, resp.read(), resp.getheader("Connection"))]
        sock = conn.sock
        assert sock is not None
        for _ in range(4):
            conn.request("POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=headers)
            resp = conn.getresponse()
            results.append((resp.status, resp.read(), resp.getheader("Connection")))
            assert conn.sock is sock  # the same TCP connection was reused
        conn.request(
            "POST",
            "/v3/mail/send",
            body=json.dumps(valid_body()),
            headers={**headers, "Connection": "close"},
        )
        resp = conn.getresponse()
        last = (resp.status, resp.read(), resp.getheader("Connection"))
    finally:
        conn.close()

    assert results == [(202, b"", "keep-alive")] * 5
    assert last == (202, b"", "close")
    assert len(sg.accepted()) == 6


def test_chunked_request_body_is_accepted(sg: SendGridStandIn) -> None:
    raw = json.dumps(valid_body()).encode()
    conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/v3/mail/send",
            body=iter([raw[:10], raw[10:]]),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        status = resp.status
        resp.read()
    finally:
        conn.close()

    assert status == 202
    assert [m.body for m in sg.accepted()] == [valid_body()]


def test_concurrent_clients_get_unique_message_ids(sg: SendGridStandIn) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", sg.port, timeout=10)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        try:
            for _ in range(25):
                conn.request(
                    "POST", "/v3/mail/send", body=json.dumps(valid_body()), headers=headers
                )
                resp = conn.getresponse()
                resp.read()
                with lock:
                    ids.append(resp.getheader("X-Message-Id") or "")
        finally:
            conn.close()

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


def test_context_manager_frees_the_port_even_with_an_idle_connection() -> None:
    conn = http.client.HTTPConnection("127.0.0.1", timeout=10)
    try:
        with SendGridStandIn(KEY) as sg:
            port = sg.port
            assert sg.url == f"http://127.0.0.1:{port}"
            conn.port = port
            conn.request(
                "GET", "/v3/suppression/bounces", headers={"Authorization": f"Bearer {KEY}"}
            )
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"[]")
            idle = conn.sock  # kept alive, now idle in the server's handler thread
            assert idle is not None
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        assert idle.recv(1) == b""  # the server closed the idle connection
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
    status, _, raw = call(sg, "/v3/suppression/unsubscribes?limit=501", method="GET")
    assert status == 400
    assert errors_of(raw)[0]["field"] == "limit"


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
    assert [(e["created"], e["email"]) for e in spam] == [(2, "s@example.com")]
    assert group == ["g1@example.com", "g2@example.com"]
    assert call(sg, "/v3/asm/groups/7/suppressions", method="GET")[2] == b"[]"
    assert call(sg, "/v3/suppression/bounces", method="GET", key=None)[0] == 401
    with pytest.raises(ValueError):
        sg.add_suppression("asm_group", "x@example.com")


def test_faults_reach_suppressions_only_when_asked(sg: SendGridStandIn) -> None:
    sg.set_faults(FaultConfig(rate_503=1.0))
    assert call(sg, "/v3/suppression/bounces", method="GET")[0] == 200
    sg.update_faults(affect_suppressions=True)
    assert call(sg, "/v3/suppression/bounces", method="GET")[0] == 503


def test_a_stand_in_bug_answers_500_instead_of_hanging(
    sg: SendGridStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(body: Any, now: float) -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr("clvflow.delivery.standin_http.validate_mail_send", broken)

    status, _, raw = call(sg, body=valid_body())

    assert status == 500
    assert "stand-in internal error" in errors_of(raw)[0]["message"]
    assert sg.accepted() == []


# --- command line ---------------------------------------------------------------------------------


def test_command_line_runs_in_the_foreground_and_prints_its_url() -> None:
    args = ["--port", "0", "--key", "SG.cli", "--rate-503", "1.0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clvflow.delivery.standin", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=20), "the stand-in printed no URL"
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(
                "POST",
                "/v3/mail/send",
                body=json.dumps(valid_body()),
                headers={"Authorization": "Bearer SG.cli", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            status = resp.status
            resp.read()
        finally:
            conn.close()
        assert status == 503
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


# --- the packaged schema and the fast path ------------------------------------------------------


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason="shared SendGrid schema not available")
def test_packaged_schema_is_a_byte_copy_of_the_shared_one() -> None:
    assert PACKAGED_SCHEMA.read_bytes() == SHARED_SCHEMA.read_bytes()


def test_fast_check_compiles_for_the_packaged_schema() -> None:
    check = mail_send_fast_check()

    assert check(valid_body())
    assert not check(valid_body(subject=""))
    with pytest.raises(UnsupportedSchemaError):
        compile_fast_check({"type": "string", "pattern": "^a"})


# Property test of the fast path: valid bodies (by the schema), then 0-3 random mutations
# (replace a value, delete a key, duplicate or drop a list item), compared with jsonschema.
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
_address = st.fixed_dictionaries(
    {"email": st.sampled_from(["a@x.com", "B@y.org", "c@z.net"])}, optional={"name": _text}
)
_addresses = st.lists(_address, min_size=1, max_size=3)
_str_dict = st.dictionaries(_text, _text, max_size=2)
_personalization = st.fixed_dictionaries(
    {"to": _addresses},
    optional={
        "cc": _addresses,
        "bcc": _addresses,
        "from": _address,
        "subject": _nonempty,
        "headers": _str_dict,
        "substitutions": _str_dict,
        "custom_args": _str_dict,
        "dynamic_template_data": st.dictionaries(_text, _json, max_size=2),
        "send_at": st.integers(0, 2**40),
    },
)
_valid_bodies = st.fixed_dictionaries(
    {
        "personalizations": st.lists(_personalization, min_size=1, max_size=2),
        "from": _address,
    },
    optional={
        "reply_to": _address,
        "reply_to_list": st.lists(
            _address, max_size=3, unique_by=lambda a: repr(sorted(a.items()))
        ),
        "subject": _nonempty,
        "content": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text/plain", "text/html"]), "value": _nonempty}
            ),
            max_size=2,
        ),
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
        "headers": _str_dict,
        "categories": st.lists(
            st.sampled_from(["a", "b", "c", "d" * 255]), max_size=4, unique=True
        ),
        "custom_args": _str_dict,
        "send_at": st.integers(0, 2**40),
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


def _maximal_bodies() -> list[dict[str, Any]]:
    """Schema-valid bodies that together use every property of the schema (two items in each
    list), split in three to keep jsonschema's time per variant down."""
    pers = {
        "to": [{"email": "a@x.com", "name": "A"}, {"email": "b@x.com"}],
        "cc": [{"email": "c@x.com"}, {"email": "d@x.com"}],
        "bcc": [{"email": "e@x.com"}, {"email": "f@x.com"}],
        "from": {"email": "p@x.com", "name": "P"},
        "subject": "S",
        "headers": {"X-A": "1"},
        "substitutions": {"-n-": "v"},
        "dynamic_template_data": {"k": [1]},
        "custom_args": {"k": "v"},
        "send_at": 1,
    }
    flag = {"enable": True}
    core = {"personalizations": [{"to": [{"email": "z@x.com"}]}], "from": {"email": "f@x.com"}}
    everything = {
        "personalizations": [pers, {"to": [{"email": "z@x.com"}]}],
        "from": {"email": "f@x.com", "name": "F"},
        "reply_to": {"email": "r@x.com", "name": "R"},
        "reply_to_list": [{"email": "r1@x.com"}, {"email": "r2@x.com", "name": "R2"}],
        "subject": "S",
        "content": [{"type": "text/plain", "value": "v"}, {"type": "text/html", "value": "v"}],
        "attachments": [
            {
                "content": "QQ==",
                "type": "t/x",
                "filename": "a",
                "disposition": "inline",
                "content_id": "c",
            },
            {"content": "Qg==", "filename": "b", "disposition": "attachment"},
        ],
        "template_id": "d-1",
        "headers": {"X-B": "2"},
        "categories": ["a", "b"],
        "custom_args": {"k": "v"},
        "send_at": 1,
        "batch_id": "b",
        "asm": {"group_id": 1, "groups_to_display": [1, 2]},
        "ip_pool_name": "pool",
        "mail_settings": {
            "bypass_list_management": flag,
            "bypass_spam_management": flag,
            "bypass_bounce_management": flag,
            "bypass_unsubscribe_management": flag,
            "footer": {"enable": True, "text": "t", "html": "h"},
            "sandbox_mode": flag,
        },
        "tracking_settings": {
            "click_tracking": {"enable": True, "enable_text": False},
            "open_tracking": {"enable": True, "substitution_tag": "%o%"},
            "subscription_tracking": {
                "enable": True,
                "text": "t",
                "html": "h",
                "substitution_tag": "%s%",
            },
            "ganalytics": {"enable": True, "utm_source": "s", "utm_medium": "m", "utm_term": "t"},
        },
    }
    settings = {k: everything.pop(k) for k in ("mail_settings", "tracking_settings")}
    envelope = {k: everything.pop(k) for k in ("personalizations", "from", "content")}
    return [envelope, {**core, **everything}, {**core, **settings}]


_TRICKY_VALUES: list[Any] = [
    None, True, 1, 1.0, 1.5, "", "x", "no-at", "a@b", "d" * 255, "d" * 256,
    "i" * 64, "i" * 65, [], ["x"], [1, 1.0], [{"a": 1}, {"a": True}], {}, {"email": "q@x.com"},
    {"k": 1},
]  # fmt: skip


_MANY_PROPERTIES = {f"k{i}": "v" for i in range(10_001)}


def _replace_with(value: Any) -> Callable[[Any, Any], None]:
    def edit(parent: Any, key: Any) -> None:
        parent[key] = copy.deepcopy(value)

    return edit


def _extend_by(n: int) -> Callable[[Any, Any], None]:
    def edit(parent: Any, key: Any) -> None:
        parent[key].extend([parent[key][-1]] * n)

    return edit


def _variants(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The body with, in turn, each value replaced by each tricky value, each key deleted,
    each list's first item duplicated, each list extended to 1001, 26 and 11 items, and each
    object given 10,001 more properties."""
    for path in _paths(body):
        edits: list[Callable[[Any, Any], object]] = [_replace_with(v) for v in _TRICKY_VALUES]
        edits.append(lambda parent, key: parent.pop(key))
        edits.append(lambda parent, key: parent[key].append(copy.deepcopy(parent[key][0])))
        edits.extend(_extend_by(n) for n in (11, 26, 1001))
        edits.append(lambda parent, key: parent[key].update(_MANY_PROPERTIES))
        for edit in edits:
            variant = copy.deepcopy(body)
            parent: Any = variant
            for key in path[:-1]:
                parent = parent[key]
            try:
                edit(parent, path[-1])
            except (AttributeError, TypeError, IndexError):
                continue  # e.g. appending to a string
            yield variant


def test_fast_check_agrees_with_jsonschema_on_every_edit_of_maximal_bodies() -> None:
    fast, reference = mail_send_fast_check(), mail_send_validator()
    disagreements = []
    count = 0
    for body in _maximal_bodies():
        assert reference.is_valid(body)
        for variant in _variants(body):
            count += 1
            if fast(variant) != reference.is_valid(variant):
                disagreements.append(variant)

    assert count > 1_500
    assert disagreements == []


@settings(max_examples=150, deadline=None, database=None)
@given(body=_valid_bodies, data=st.data())
def test_fast_check_agrees_with_jsonschema(body: dict[str, Any], data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(0, 3))):
        _mutate(body, data)

    fast = mail_send_fast_check()(copy.deepcopy(body))
    reference = mail_send_validator().is_valid(body)

    # Sound (never accepts what jsonschema rejects) and, for this schema, complete.
    assert fast == reference


def _raw_exchange(sg: SendGridStandIn, data: bytes, wait: float = 3.0) -> bytes:
    """Send raw bytes on a new connection; everything the server sends until it closes
    (or ``wait`` seconds pass)."""
    with socket.create_connection(("127.0.0.1", sg.port)) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        got = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                got += chunk
        return got


def _post(body: bytes, extra: str = "", close: bool = False) -> bytes:
    head = (
        f"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode() + body


def test_a_malformed_request_gets_400_and_the_connection_is_closed(sg: SendGridStandIn) -> None:
    got = _raw_exchange(sg, b"POST /v3/mail/send HTTP/1.1\r\nBad Header Line\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in got
    assert sg.accepted() == []


def test_an_unsupported_transfer_coding_gets_501(sg: SendGridStandIn) -> None:
    head = f"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
    got = _raw_exchange(sg, head.encode() + b"Transfer-Encoding: gzip\r\n\r\n{}")
    assert got.startswith(b"HTTP/1.1 501 ")
    assert b"gzip" in got
    # with a Content-Length beside it the request is ambiguous (smuggling): 400
    got = _raw_exchange(sg, _post(b"{}", "Transfer-Encoding: gzip\r\n"))
    assert got.startswith(b"HTTP/1.1 400 ")


def test_too_many_header_lines_get_431(sg: SendGridStandIn) -> None:
    extra = "".join(f"X-Pad-{i}: {i}\r\n" for i in range(120))
    got = _raw_exchange(sg, _post(json.dumps(valid_body()).encode(), extra))
    assert got.startswith(b"HTTP/1.1 431 ")
    assert sg.accepted() == []


def test_expect_100_continue_is_answered_before_the_body(sg: SendGridStandIn) -> None:
    body = json.dumps(valid_body()).encode()
    head = _post(body, "Expect: 100-continue\r\n", close=True)[: -len(body)]
    with socket.create_connection(("127.0.0.1", sg.port)) as sock:
        sock.settimeout(3)
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 202 ")
    assert len(sg.accepted()) == 1


def test_pipelined_requests_are_answered_in_order(sg: SendGridStandIn) -> None:
    first = json.dumps(valid_body()).encode()
    second = b"{not json"
    got = _raw_exchange(sg, _post(first) + _post(second, close=True))
    assert got.index(b"HTTP/1.1 202 ") < got.index(b"HTTP/1.1 400 ")
    assert got.count(b"HTTP/1.1 ") == 2
    assert len(sg.accepted()) == 1


def test_a_slow_answer_holds_up_no_other_connection() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_delay_s=1.0)
    with SendGridStandIn(KEY, faults=faults) as sg:
        slow: list[float] = []

        def slow_call() -> None:
            started = time.monotonic()
            call(sg, body=valid_body())
            slow.append(time.monotonic() - started)

        worker = threading.Thread(target=slow_call)
        worker.start()
        time.sleep(0.2)  # the slow request is being answered
        sg.update_faults(rate_slow=0.0)
        started = time.monotonic()
        status = call(sg, "/v3/suppression/bounces", method="GET")[0]
        quick = time.monotonic() - started
        worker.join()
    assert status == 200
    assert quick < 0.5
    assert slow[0] >= 1.0


def test_a_bug_while_serving_one_connection_ends_that_connection_not_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from clvflow.delivery import standin_http

    original = standin_http._Connection.answer_ready
    calls = {"n": 0}

    def first_call_fails(self: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the stand-in")
        original(self)

    monkeypatch.setattr(standin_http._Connection, "answer_ready", first_call_fails)
    with SendGridStandIn(KEY) as sg:
        got = _raw_exchange(sg, _post(json.dumps(valid_body()).encode()))
        assert got == b""  # closed without a reply
        assert call(sg, body=valid_body())[0] == 202  # the server still serves
    assert "stand-in failed serving a connection" in caplog.text
