"""Unsubscribe tokens identify customer and campaign and cannot be forged or altered."""

from __future__ import annotations

import pytest

from clvflow.compliance.unsubscribe import (
    InvalidTokenError,
    list_unsubscribe_headers,
    make_token,
    verify_token,
)

KEY = b"k" * 32


def test_round_trip() -> None:
    claim = verify_token(KEY, make_token(KEY, "C42", "win-back"))
    assert (claim.customer_id, claim.campaign) == ("C42", "win-back")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: make_token(b"x" * 32, "C42", "win-back"),  # signed with another key
        lambda t: make_token(KEY, "C43", "win-back").split(".")[0] + "." + t.split(".")[1],
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.split(".")[0],
        lambda t: "not-a-token",
        lambda t: t + ".extra",
        lambda t: "%%%.%%%",
    ],
    ids=[
        "other-key",
        "swapped-payload",
        "altered-signature",
        "no-signature",
        "garbage",
        "extra-part",
        "bad-base64",
    ],
)
def test_forged_or_altered_tokens_are_rejected(tamper) -> None:  # type: ignore[no-untyped-def]
    token = make_token(KEY, "C42", "win-back")
    with pytest.raises(InvalidTokenError):
        verify_token(KEY, tamper(token))


def test_headers_follow_rfc_8058() -> None:
    token = make_token(KEY, "C1", "vip")
    headers = list_unsubscribe_headers(
        "https://shop.example/unsubscribe/" + token, "u@shop.example", token
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://shop.example/unsubscribe/")
    assert "<mailto:u@shop.example?subject=unsubscribe%20" in headers["List-Unsubscribe"]
