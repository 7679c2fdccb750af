"""The key that signs unsubscribe links.

It comes from ``CLVFLOW_SECRET_KEY``. Without it, a project that only writes to the outbox
(the demo, a marketer's laptop) gets a random key kept in ``.clvflow/secret.key`` with owner-only
permissions; a project that sends real mail must set the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from clvflow.errors import ConfigError

ENV = "CLVFLOW_SECRET_KEY"
MIN_LENGTH = 16


def signing_key(state_dir: Path, *, allow_local: bool) -> bytes:
    value = os.environ.get(ENV)
    if value:
        if len(value) < MIN_LENGTH:
            raise ConfigError(
                f"{ENV} is too short", hint=f"use at least {MIN_LENGTH} random characters"
            )
        return value.encode()
    if not allow_local:
        raise ConfigError(
            f"{ENV} is not set",
            hint="set it to a long random string; it signs unsubscribe links",
        )
    path = state_dir / "secret.key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()
