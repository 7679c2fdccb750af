"""Who may see the console: whoever knows the password in ``CLVFLOW_CONSOLE_PASSWORD``.

Scripts send it as HTTP Basic auth (any user name); people sign in through a form and get
a session cookie: ``<expiry>.<nonce>.<HMAC-SHA256>``, signed with a key derived from the
web app's signing key and the password (changing the password ends every session).
Passwords and signatures are compared with :func:`hmac.compare_digest`. Without the
variable the console is off.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

PASSWORD_ENV = "CLVFLOW_CONSOLE_PASSWORD"
COOKIE = "clvflow_console"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Access:
    password: str | None
    key: bytes  # signs the session cookies

    @classmethod
    def from_env(cls, signing_key: bytes, env: Mapping[str, str]) -> Access:
        password = env.get(PASSWORD_ENV) or None
        material = b"clvflow-console\0" + (password or "").encode()
        return cls(password, hmac.new(signing_key, material, hashlib.sha256).digest())

    @property
    def enabled(self) -> bool:
        return self.password is not None

    def password_ok(self, given: str) -> bool:
        if self.password is None:
            return False
        return hmac.compare_digest(given.encode(), self.password.encode())

    def basic_ok(self, header: str | None) -> bool:
        """An ``Authorization: Basic …`` header carrying the password (any user name)."""
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, colon, password = decoded.partition(":")
        return bool(colon) and self.password_ok(password)

    def _signature(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        payload = f"{expires}.{secrets.token_hex(8)}"
        return f"{payload}.{self._signature(payload)}"

    def session_ok(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or not self.enabled:
            return False
        payload, _, signature = cookie.rpartition(".")
        expires, _, _ = payload.partition(".")
        if not hmac.compare_digest(self._signature(payload), signature):
            return False
        try:
            return int(expires) > (time.time() if now is None else now)
        except ValueError:
            return False
