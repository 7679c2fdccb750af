"""Request-body validation for the local SendGrid stand-in (``POST /v3/mail/send``).

Two layers, both run on every request:

1. the packaged JSON schema (``clvflow/schemas/sendgrid_mail_send.schema.json``, a copy of the
   patched schema from SendGrid's OpenAPI spec), checked with a ``jsonschema.Draft7Validator``
   compiled once per process;
2. the rules SendGrid enforces that the schema cannot express (content order, recipient limits
   and uniqueness, custom_args/substitutions sizes, categories, reserved or malformed headers,
   ``send_at`` horizon, ...).

Errors are returned as :class:`SendGridError` items, which the server renders in SendGrid's
format ``{"errors": [{"message", "field", "help"}]}``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import jsonschema

SCHEMA_RESOURCE: Final = "schemas/sendgrid_mail_send.schema.json"
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


def load_schema() -> dict[str, Any]:
    """The packaged mail-send request schema (parsed JSON)."""
    text = resources.files("clvflow").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def mail_send_validator() -> jsonschema.Draft7Validator:
    """The Draft-7 validator for the packaged schema, compiled once per process.

    Email ``format`` is checked (jsonschema's check: the value contains an ``@``).
    """
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


# --- fast path ------------------------------------------------------------------------------
# jsonschema costs ~150-300 us for a small message (most of the stand-in's time per request).
# compile_fast_check() turns the subset of Draft 7 this schema uses into plain closures that
# answer "certainly valid" in a few microseconds. It is sound, not complete: when it says False
# (or meets a case it does not model exactly, e.g. 1.0 for an integer), jsonschema decides and
# produces the error messages. The tests check it against jsonschema on generated bodies.

FastCheck = Callable[[Any], bool]
_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "$schema", "$comment"}
)


def _is_integer(x: Any) -> bool:
    # Draft 6+ counts integral floats (1.0) as integers.
    if isinstance(x, float):
        return x.is_integer()
    return isinstance(x, int) and not isinstance(x, bool)


_TYPES: Final[dict[str, FastCheck]] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "integer": _is_integer,
    "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
}


class UnsupportedSchemaError(ValueError):
    """The schema uses a keyword the fast check does not model."""


def _all(checks: list[FastCheck]) -> FastCheck:
    if len(checks) == 1:
        return checks[0]
    return lambda x: all(check(x) for check in checks)


def _type_check(spec: Any) -> FastCheck:
    names = [spec] if isinstance(spec, str) else list(spec)
    if not names or any(n not in _TYPES for n in names):
        raise UnsupportedSchemaError(f"type {spec!r}")
    preds = [_TYPES[n] for n in names]
    return preds[0] if len(preds) == 1 else (lambda x: any(p(x) for p in preds))


def _object_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    checks: list[FastCheck] = []
    props = {name: compile_fast_check(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_check: FastCheck | None
    if extra is True:
        extra_check = None
    elif extra is False:
        extra_check = lambda _: False  # noqa: E731
    else:
        extra_check = compile_fast_check(extra)
    if not props and _strings_only(extra):
        # a map of strings (headers, custom_args, substitutions): the types of its values
        # collected in C, not a call per value
        checks.append(lambda x: not isinstance(x, dict) or set(map(type, x.values())) <= _STR)
    elif props or extra_check is not None:

        def properties(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for key, value in x.items():
                check = props.get(key, extra_check)
                if check is not None and not check(value):
                    return False
            return True

        checks.append(properties)
    if required := list(schema.get("required", ())):
        checks.append(lambda x: not isinstance(x, dict) or all(k in x for k in required))
    if (max_props := schema.get("maxProperties")) is not None:
        checks.append(lambda x: not isinstance(x, dict) or len(x) <= max_props)
    return checks


_STR: Final = frozenset({str})


def _strings_only(schema: Any) -> bool:
    """``{"type": "string"}``, annotations aside."""
    return (
        isinstance(schema, dict)
        and schema.get("type") == "string"
        and set(schema) - _ANNOTATIONS == {"type"}
    )


def _canonical(value: Any) -> Any:
    """A form in which JSON values compare the way jsonschema's ``uniqueItems`` compares them.

    Integral floats equal their ints (1.0 == 1), booleans differ from numbers (True != 1),
    objects compare by content regardless of key order.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _unique(items: list[Any]) -> bool:
    if all(isinstance(i, str) for i in items):
        return len(set(items)) == len(items)
    keys = {json.dumps(_canonical(i), sort_keys=True) for i in items}
    return len(keys) == len(items)


def _array_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    checks: list[FastCheck] = []
    if "items" in schema:
        if not isinstance(schema["items"], Mapping):
            raise UnsupportedSchemaError("items must be a single schema")
        item = compile_fast_check(schema["items"])
        checks.append(lambda x: not isinstance(x, list) or all(item(i) for i in x))
    if (max_items := schema.get("maxItems")) is not None:
        checks.append(lambda x: not isinstance(x, list) or len(x) <= max_items)
    if (min_items := schema.get("minItems")) is not None:
        checks.append(lambda x: not isinstance(x, list) or len(x) >= min_items)
    if schema.get("uniqueItems") is True:
        checks.append(lambda x: not isinstance(x, list) or _unique(x))
    return checks


def _scalar_checks(schema: Mapping[str, Any]) -> list[FastCheck]:
    checks: list[FastCheck] = []
    if (min_len := schema.get("minLength")) is not None:
        checks.append(lambda x: not isinstance(x, str) or len(x) >= min_len)
    if (max_len := schema.get("maxLength")) is not None:
        checks.append(lambda x: not isinstance(x, str) or len(x) <= max_len)
    if "enum" in schema:
        options = list(schema["enum"])
        if not all(isinstance(o, str) for o in options):
            raise UnsupportedSchemaError("enum of non-strings")
        checks.append(lambda x: isinstance(x, str) and x in options)
    if "format" in schema:
        if schema["format"] != "email":
            raise UnsupportedSchemaError(f"format {schema['format']!r}")
        checks.append(lambda x: not isinstance(x, str) or "@" in x)
    return checks


_SUPPORTED: Final = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "maxProperties",
        "items",
        "maxItems",
        "minItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "enum",
        "format",
    }
)


def compile_fast_check(schema: Any) -> FastCheck:
    """Compile a Draft-7 schema (with email format checking) into a sound quick check.

    The result returns True only for instances ``mail_send_validator()`` accepts too. Raises
    :class:`UnsupportedSchemaError` for keywords outside the modelled subset.
    """
    if schema is True or schema == {}:
        return lambda _: True
    if not isinstance(schema, Mapping):
        raise UnsupportedSchemaError(f"schema {schema!r}")
    unknown = set(schema) - _SUPPORTED - _ANNOTATIONS
    if unknown:
        raise UnsupportedSchemaError(f"keywords {sorted(unknown)}")
    checks: list[FastCheck] = []
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    checks.extend(_object_checks(schema))
    checks.extend(_array_checks(schema))
    checks.extend(_scalar_checks(schema))
    return _all(checks) if checks else (lambda _: True)


@functools.cache
def mail_send_fast_check() -> FastCheck:
    """The compiled quick check for the packaged schema (always False if it cannot compile)."""
    try:
        return compile_fast_check(load_schema())
    except UnsupportedSchemaError:
        return lambda _: False


def schema_errors(body: Any) -> list[SendGridError]:
    """Violations of the packaged JSON schema, as SendGrid-style errors (at most 20)."""
    if mail_send_fast_check()(body):
        return []
    out: list[SendGridError] = []
    errors = sorted(
        mail_send_validator().iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]
    )
    for err in errors[:MAX_SCHEMA_ERRORS]:
        path = [str(p) for p in err.absolute_path]
        if err.validator == "required" and isinstance(err.instance, Mapping):
            missing = [
                name
                for name in err.validator_value
                if name not in err.instance and err.message == f"{name!r} is a required property"
            ]
            path.extend(missing[:1])
        field = ".".join(path) if path else None
        anchor = path[0] if path else "body"
        out.append(SendGridError(err.message, field, _help(anchor)))
    return out


def _utf8_size(mapping: Mapping[str, Any]) -> int:
    values = mapping.values()
    if set(map(type, values)) <= _STR:  # the usual case: one join, one length
        joined = "".join(mapping) + "".join(values)
        return len(joined) if joined.isascii() else len(joined.encode())
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
    ranks = [_CONTENT_RANK.get(str(item.get("type", "")).lower(), 2) for item in content]
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
        seen: dict[str, str] = {}
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
                else:
                    seen[email] = kind
    if total > MAX_RECIPIENTS:
        yield SendGridError(
            f"The total number of recipients (to, cc and bcc across all personalizations) "
            f"must be no more than {MAX_RECIPIENTS}; found {total}.",
            "personalizations",
            _help("recipient-errors"),
        )


def _check_custom_args_values(args: Any, field: str) -> Iterator[SendGridError]:
    if not isinstance(args, Mapping):
        return
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
        merged = {**message_args, **own}
        if _utf8_size(merged) > MAX_CUSTOM_ARGS_BYTES:
            yield SendGridError(
                f"The custom_args for a personalization (message level plus personalization "
                f"level) may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                f"personalizations.{i}.custom_args",
                _help("custom_args"),
            )
        subs = pers.get("substitutions") or {}
        if _utf8_size(subs) > MAX_SUBSTITUTIONS_BYTES:
            yield SendGridError(
                f"The substitutions of a personalization may not exceed "
                f"{MAX_SUBSTITUTIONS_BYTES} bytes.",
                f"personalizations.{i}.substitutions",
                _help("substitutions"),
            )


def _check_categories(body: Mapping[str, Any]) -> Iterator[SendGridError]:
    # The schema already limits count (10), uniqueness and length (255); ASCII is left.
    for i, cat in enumerate(body.get("categories") or ()):
        if not cat.isascii():
            yield SendGridError(
                "A category must contain only ASCII characters.",
                f"categories.{i}",
                _help("categories"),
            )


def _check_headers(headers: Any, field: str) -> Iterator[SendGridError]:
    if not isinstance(headers, Mapping):
        return
    for name, value in headers.items():
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
    """All errors for a parsed ``POST /v3/mail/send`` body; empty when SendGrid would accept it.

    Schema errors are reported alone (the rules assume a schema-valid body).
    """
    errors = schema_errors(body)
    if errors:
        return errors
    return rule_errors(body, now)
