"""Validation of ``POST /v3/mail/send`` bodies, in two layers:

1. SendGrid's published request schema (``../shared/sendgrid/mail_send_request.patched.schema.json``
   when that file exists, else the byte copy next to this module), checked by a
   ``jsonschema.Draft7Validator`` built once per process, email ``format`` included;
2. the rules SendGrid enforces that the schema cannot express (``../shared/sendgrid/README.md``):
   content order, recipient limits and uniqueness, custom_args and substitutions sizes,
   categories, reserved or malformed headers, the ``send_at`` horizon, reply_to or its list.

Schema errors are reported alone: the rules read a body the schema accepted.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema

__all__ = [
    "SCHEMA_NAME",
    "SendGridError",
    "mail_send_validator",
    "rule_errors",
    "schema_errors",
    "schema_path",
    "validate_mail_send",
]

SCHEMA_NAME: Final = "mail_send_request.patched.schema.json"
_REPO: Final = Path(__file__).resolve().parents[3]
SHARED_SCHEMA: Final = _REPO.parent / "shared" / "sendgrid" / SCHEMA_NAME
VENDORED_SCHEMA: Final = Path(__file__).with_name(SCHEMA_NAME)
HELP_BASE: Final = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"

MAX_PERSONALIZATIONS: Final = 1000
MAX_RECIPIENTS: Final = 1000
MAX_CUSTOM_ARGS_BYTES: Final = 10_000
MAX_SUBSTITUTIONS_BYTES: Final = 10_000
MAX_SEND_AT_AHEAD_S: Final = 72 * 3600
MAX_SCHEMA_ERRORS: Final = 20

RESERVED_HEADERS: Final = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
# RFC 5322 field name: printable US-ASCII except colon.
_HEADER_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_CONTENT_RANK: Final = {"text/plain": 0, "text/html": 1}


@dataclass(frozen=True, slots=True)
class SendGridError:
    """One item of SendGrid's ``errors`` array."""

    message: str
    field: str | None = None
    help: str | None = None

    def as_json(self) -> dict[str, str | None]:
        """The JSON object SendGrid sends for this error."""
        return {"message": self.message, "field": self.field, "help": self.help}


def _help(anchor: str) -> str:
    return f"{HELP_BASE}#message.{anchor}"


def schema_path() -> Path:
    """The schema file in use: the shared one when present, else the vendored copy."""
    return SHARED_SCHEMA if SHARED_SCHEMA.is_file() else VENDORED_SCHEMA


@functools.cache
def mail_send_validator() -> jsonschema.Draft7Validator:
    """The Draft-7 validator of the mail-send request schema, built once per process."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def schema_errors(body: Any) -> list[SendGridError]:
    """Violations of the request schema (at most 20), with the field each one names."""
    found = sorted(
        mail_send_validator().iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]
    )
    out: list[SendGridError] = []
    for err in found[:MAX_SCHEMA_ERRORS]:
        path = [str(p) for p in err.absolute_path]
        if err.validator == "required" and isinstance(err.instance, Mapping):
            # name the missing property itself, as SendGrid does
            path.extend(
                name
                for name in err.validator_value
                if name not in err.instance and err.message == f"{name!r} is a required property"
            )
        field = ".".join(path) if path else None
        out.append(SendGridError(err.message, field, _help(path[0] if path else "body")))
    return out


def _utf8_size(mapping: Mapping[str, Any]) -> int:
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in mapping.items())


def _check_content(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    content = body.get("content")
    if not content:
        if not body.get("template_id"):
            yield SendGridError(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
                _help("content"),
            )
        return
    ranks = [_CONTENT_RANK.get(str(item["type"]).lower(), 2) for item in content]
    if ranks != sorted(ranks):
        yield SendGridError(
            "If present, text/plain must be first, followed by text/html, followed by any "
            "other content.",
            "content",
            _help("content"),
        )


def _check_subject(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    if body.get("subject") or body.get("template_id"):
        return
    if all(p.get("subject") for p in body["personalizations"]):
        return
    yield SendGridError(
        "The subject is required. You can get around this requirement if you use a template "
        "with a subject defined or if every personalization has a subject defined.",
        "subject",
        _help("subject"),
    )


def _check_recipients(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    personalizations = body["personalizations"]
    if not personalizations:
        yield SendGridError(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
            _help("personalizations"),
        )
        return
    if len(personalizations) > MAX_PERSONALIZATIONS:
        yield SendGridError(
            f"The personalizations field may not contain more than {MAX_PERSONALIZATIONS} "
            "personalizations per request.",
            "personalizations",
            _help("personalizations"),
        )
    total = 0
    for i, pers in enumerate(personalizations):
        if not pers["to"]:
            yield SendGridError(
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"personalizations.{i}.to",
                _help("personalizations.to"),
            )
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            for j, rcpt in enumerate(pers.get(kind) or ()):
                total += 1
                email = str(rcpt["email"]).strip().lower()
                if email in seen:
                    yield SendGridError(
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{rcpt['email']}] in the personalizations.{i}.{kind} field.",
                        f"personalizations.{i}.{kind}.{j}.email",
                        _help("recipient-errors"),
                    )
                seen.add(email)
    if total > MAX_RECIPIENTS:
        yield SendGridError(
            f"The total number of recipients (to, cc and bcc across all personalizations) "
            f"must be no more than {MAX_RECIPIENTS}; found {total}.",
            "personalizations",
            _help("recipient-errors"),
        )


def _check_custom_args_values(args: Mapping[str, Any], field: str) -> Iterator[SendGridError]:
    for key, value in args.items():
        if not isinstance(value, str) or not value:
            yield SendGridError(
                f"Invalid custom_args value for key {key!r}: each value must be a non-empty "
                "string.",
                f"{field}.{key}",
                _help("custom_args"),
            )


def _check_custom_args(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    message_args = body.get("custom_args") or {}
    yield from _check_custom_args_values(message_args, "custom_args")
    for i, pers in enumerate(body["personalizations"]):
        own = pers.get("custom_args") or {}
        yield from _check_custom_args_values(own, f"personalizations.{i}.custom_args")
        if _utf8_size({**message_args, **own}) > MAX_CUSTOM_ARGS_BYTES:
            yield SendGridError(
                f"The custom_args for a personalization (message level plus personalization "
                f"level) may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                f"personalizations.{i}.custom_args",
                _help("custom_args"),
            )
        if _utf8_size(pers.get("substitutions") or {}) > MAX_SUBSTITUTIONS_BYTES:
            yield SendGridError(
                f"The substitutions of a personalization may not exceed "
                f"{MAX_SUBSTITUTIONS_BYTES} bytes.",
                f"personalizations.{i}.substitutions",
                _help("substitutions"),
            )


def _check_categories(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    # The schema limits their count (10), uniqueness and length (255); ASCII is left.
    for i, category in enumerate(body.get("categories") or ()):
        if not category.isascii():
            yield SendGridError(
                "A category must contain only ASCII characters.",
                f"categories.{i}",
                _help("categories"),
            )


def _check_headers(headers: Mapping[str, Any] | None, field: str) -> Iterator[SendGridError]:
    for name, value in (headers or {}).items():
        if not isinstance(value, str):
            yield SendGridError(
                f"Invalid type for header {name!r}: header values must be strings.",
                f"{field}.{name}",
                _help("headers"),
            )
        elif "\r" in value or "\n" in value:
            yield SendGridError(
                f"The value of header {name!r} may not contain CR or LF characters.",
                f"{field}.{name}",
                _help("headers"),
            )
        if name.lower() in RESERVED_HEADERS:
            yield SendGridError(
                f"The header {name!r} is reserved and may not be set.",
                f"{field}.{name}",
                _help("headers"),
            )
        elif not _HEADER_NAME.match(name):
            yield SendGridError(
                f"Invalid header name {name!r}: use printable ASCII characters except ':'.",
                f"{field}.{name}",
                _help("headers"),
            )


def _check_send_at(value: Any, field: str, now: float) -> Iterator[SendGridError]:
    if isinstance(value, int | float) and value > now + MAX_SEND_AT_AHEAD_S:
        yield SendGridError(
            "The send_at parameter may not be scheduled more than 72 hours in advance.",
            field,
            _help("send_at"),
        )


def _check_reply_to(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    if "reply_to" in body and "reply_to_list" in body:
        yield SendGridError(
            "You may use either reply_to or reply_to_list, but not both.",
            "reply_to_list",
            _help("reply_to"),
        )


def rule_errors(body: Mapping[str, Any], now: float) -> list[SendGridError]:
    """Violations of the rules the schema cannot express; ``body`` must be schema-valid."""
    out: list[SendGridError] = []
    out.extend(_check_recipients(body))
    out.extend(_check_subject(body))
    out.extend(_check_content(body))
    out.extend(_check_reply_to(body))
    out.extend(_check_custom_args(body))
    out.extend(_check_categories(body))
    out.extend(_check_headers(body.get("headers"), "headers"))
    out.extend(_check_send_at(body.get("send_at"), "send_at", now))
    for i, pers in enumerate(body["personalizations"]):
        out.extend(_check_headers(pers.get("headers"), f"personalizations.{i}.headers"))
        out.extend(_check_send_at(pers.get("send_at"), f"personalizations.{i}.send_at", now))
    return out


def validate_mail_send(body: Any, now: float) -> list[SendGridError]:
    """Every error SendGrid would report for a parsed mail-send body (``now``: epoch
    seconds, for ``send_at``); empty when it would accept the body."""
    return schema_errors(body) or rule_errors(body, now)
