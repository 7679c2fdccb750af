"""Mail-send bodies: the envelope-once fast path gives exactly what the official ``Mail``
helper gives, for generated messages, and what it gives is valid for SendGrid."""

from __future__ import annotations

import json
import string
import time

import jsonschema
import pytest
from fakes.sendgrid_standin import validate_mail_send
from hypothesis import given, settings
from hypothesis import strategies as st
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import PayloadBuilder, build_payload
from tests.conftest import ROOT

SCHEMA = json.loads(
    (ROOT.parent / "shared" / "sendgrid" / "mail_send_request.patched.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

_local = st.text(string.ascii_lowercase + string.digits + "._+-", min_size=1, max_size=12)
_domain = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
addresses = st.builds(lambda a, b: f"{a}@{b}.example", _local, _domain)
# names and values include what the helper rewrites (commas, semicolons) and unicode
names = st.one_of(st.just(""), st.text(max_size=20), st.sampled_from(["Ann, B", "Dr; X", "Zoë"]))
values = st.text(min_size=0, max_size=40)
header_names = st.sampled_from(["List-Unsubscribe", "List-Unsubscribe-Post", "X-Clvflow-Campaign"])


@st.composite
def messages(draw: st.DrawFn) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=draw(st.integers(1, 10**9)),
        campaign=draw(st.text(string.ascii_lowercase + "-", min_size=1, max_size=20)),
        occurrence=draw(st.sampled_from(["once", "2026-11-23", "O123"])),
        customer_id=draw(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=8)),
        to_email=draw(st.one_of(addresses, st.just("Ann <ann@x.example>"))),
        to_name=draw(names),
        from_email=draw(addresses),
        from_name=draw(names),
        subject=draw(values),
        html=draw(values),
        text=draw(values),
        reply_to=draw(st.one_of(st.none(), addresses)),
        headers=draw(st.dictionaries(header_names, values, max_size=3)),
        categories=tuple(draw(st.lists(st.text(string.ascii_lowercase, min_size=1), max_size=3))),
    )


@settings(max_examples=400, deadline=None)
@given(message=messages(), sandbox=st.booleans())
def test_the_fast_path_builds_what_the_official_helper_builds(
    message: OutgoingMessage, sandbox: bool
) -> None:
    builder = PayloadBuilder(sandbox)
    first = builder.payload(message)
    again = builder.payload(message)  # the second one reuses the cached envelope
    assert first == again == build_payload(message, sandbox)


def test_a_campaign_message_is_valid_for_sendgrid_and_carries_its_keys() -> None:
    message = OutgoingMessage(
        message_id=42, campaign="win-back", occurrence="2026-11-23", customer_id="C000123",
        to_email="ann@example.com", to_name="Ann Berg", from_email="hello@shop.example",
        from_name="Paper & Vows", subject="We've missed you", html="<p>Hi</p>", text="Hi",
        reply_to="care@shop.example",
        headers={"List-Unsubscribe": "<https://x/u/t>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        categories=("win-back",),
    )  # fmt: skip
    for sandbox in (False, True):
        body = PayloadBuilder(sandbox).payload(message)
        VALIDATOR.validate(body)
        assert validate_mail_send(body, time.time()) == []
        assert body["custom_args"] == {
            "clvflow_campaign": "win-back",
            "clvflow_occurrence": "2026-11-23",
            "clvflow_customer": "C000123",
            "clvflow_message": "42",
        }
        assert body["categories"] == ["win-back"]
        assert body["personalizations"] == [
            {"to": [{"name": "Ann Berg", "email": "ann@example.com"}]}
        ]
        assert ("mail_settings" in body) is sandbox
        if sandbox:
            assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_an_api_key_at_the_start_of_a_part_is_refused_like_the_helper_does() -> None:
    leaked = OutgoingMessage(
        message_id=1, campaign="c", occurrence="once", customer_id="C1", to_email="a@b.example",
        to_name="", from_email="s@b.example", from_name="", subject="s",
        html="<p>x</p>", text="SG.abcdef.ghijkl is my key",
    )  # fmt: skip
    with pytest.raises(ApiKeyIncludedException):
        build_payload(leaked, False)
    with pytest.raises(ApiKeyIncludedException):
        PayloadBuilder(False).payload(leaked)
