"""Signed unsubscribe tokens and the RFC 8058 headers that carry them.

A token is ``<payload>.<signature>``, both base64url: the payload names the customer and
the campaign, the signature is HMAC-SHA256 over it with the project's key (first 16 bytes).
A token cannot be forged or altered without the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

_SEP = "\x1f"


class InvalidTokenError(ValueError):
    """The token is malformed or its signature does not match."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    customer_id: str
    campaign: str


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Characters ``quote`` leaves as they are: every character of a token.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*\Z")


def _b64(data: bytes) -> str:
    """base64url without padding (``urlsafe_b64encode`` in fewer steps)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:16]


def make_token(key: bytes, customer_id: str, campaign: str) -> str:
    payload = f"{customer_id}{_SEP}{campaign}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


class Signer:
    """``make_token`` for many tokens with one key: the keyed HMAC state is set up once
    and copied per token (the same tokens)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, customer_id: str, campaign: str) -> str:
        payload = f"{customer_id}{_SEP}{campaign}".encode()
        mac = self._keyed.copy()
        mac.update(payload)
        return f"{_b64(payload)}.{_b64(mac.digest()[:16])}"


def verify_token(key: bytes, token: str) -> UnsubscribeClaim:
    try:
        head, sig = token.split(".")
        payload = _unb64(head)
        given = _unb64(sig)
    except (ValueError, TypeError):
        raise InvalidTokenError("malformed unsubscribe token") from None
    if not hmac.compare_digest(given, _mac(key, payload)):
        raise InvalidTokenError("unsubscribe token signature does not match")
    customer_id, _, campaign = payload.decode("utf-8", "replace").partition(_SEP)
    return UnsubscribeClaim(customer_id=customer_id, campaign=campaign)


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"


def list_unsubscribe_headers(url: str, mailto: str, token: str) -> dict[str, str]:
    """``List-Unsubscribe`` (https and mailto) and ``List-Unsubscribe-Post`` (RFC 8058)."""
    subject = "unsubscribe%20" + token if _UNQUOTED.match(token) else quote(f"unsubscribe {token}")
    return {
        "List-Unsubscribe": f"<{url}>, <mailto:{mailto}?subject={subject}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
