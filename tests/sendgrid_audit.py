"""Every mail-send body a :class:`SendGridStandIn` (``tests/fakes/sendgrid_standin``) accepts
during the test session is checked once more, at the end of the session, against SendGrid's
published request schema (``../shared/sendgrid/mail_send_request.patched.schema.json``; the
stand-in's vendored copy when the shared folder is absent). The stand-in validates each request
before accepting it; this is an independent second check, with a validator of its own, over
everything it let through.

``conftest.py`` starts the audit for the session and prints its line in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
SHARED_SCHEMA = ROOT.parent / "shared" / "sendgrid" / "mail_send_request.patched.schema.json"
VENDORED_SCHEMA = (
    ROOT / "tests" / "fakes" / "sendgrid_standin" / "mail_send_request.patched.schema.json"
)


@dataclass
class Audit:
    schema: Path
    standins: int = 0
    checked: int = 0
    invalid: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"SendGrid stand-in audit: {self.checked} accepted request(s) from "
            f"{self.standins} stand-in(s) validated against {self.schema}; "
            f"{len(self.invalid)} invalid"
        )


@contextmanager
def audit_session() -> Iterator[Audit]:
    """Record every stand-in created inside the block; validate what they accepted at exit."""
    from fakes.sendgrid_standin import SendGridStandIn

    schema_path = SHARED_SCHEMA if SHARED_SCHEMA.is_file() else VENDORED_SCHEMA
    validator = jsonschema.Draft7Validator(
        json.loads(schema_path.read_text(encoding="utf-8")),
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )
    result = Audit(schema=schema_path)
    created: list[SendGridStandIn] = []
    original_init = SendGridStandIn.__init__

    def recording_init(self: SendGridStandIn, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        created.append(self)

    SendGridStandIn.__init__ = recording_init  # type: ignore[method-assign]
    try:
        yield result
    finally:
        SendGridStandIn.__init__ = original_init  # type: ignore[method-assign]
        result.standins = len(created)
        for standin in created:
            if not standin.keep_content:
                continue  # bodies kept without their parts cannot be checked whole
            for accepted in [*standin.accepted(), *standin.sandboxed()]:
                result.checked += 1
                error = jsonschema.exceptions.best_match(validator.iter_errors(accepted.body))
                if error is not None:
                    result.invalid.append(f"{accepted.message_id}: {error.message}")
