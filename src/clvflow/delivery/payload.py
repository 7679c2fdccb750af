"""Request bodies for SendGrid's ``POST /v3/mail/send``, built with the official ``sendgrid``
package's helper classes.

:func:`build_payload` runs the whole ``Mail`` helper for one message.
:class:`PayloadBuilder` runs it once per *envelope* (sender, reply-to,
categories, sandbox switch) and then fills in each message's values (recipient, subject,
parts, headers, custom_args) the way ``Mail.get()`` lays them out, with the helper's own
API-key check on the parts; messages with values the helper would rewrite (a display name
with a comma, an address in ``Name <addr>`` form, empty fields) go through the whole helper.
The tests check both paths give the same body for generated messages.

:meth:`PayloadBuilder.shared` lays out a :class:`~clvflow.delivery.grouping.Group` the same
way: the envelope, one content with tags, and per message a personalization with what a
single body has at the top (subject, headers, custom_args) and its substitutions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    To,
)
from sendgrid.helpers.mail.validators import ValidateApiKey

from clvflow.delivery.message import OutgoingMessage

if TYPE_CHECKING:
    from clvflow.delivery.grouping import Group

# what the helper takes as it is: a bare address, a display name it does not quote
_PLAIN_ADDRESS = re.compile(r"[^\s<>\"(),;:\\\[\]]+@[^\s<>\"(),;:\\\[\]]+\Z")
_VARIABLE = ("subject", "personalizations", "content", "headers", "custom_args")


def custom_args(message: OutgoingMessage) -> list[tuple[str, str]]:
    """What webhook events carry back: campaign, occurrence, customer and the ledger row;
    and a journey's step."""
    args = [
        ("clvflow_campaign", message.campaign),
        ("clvflow_occurrence", message.occurrence),
        ("clvflow_customer", message.customer_id),
        ("clvflow_message", str(message.message_id)),
    ]
    if message.step:
        args.append(("clvflow_step", message.step))
    return args


def build_payload(message: OutgoingMessage, sandbox: bool) -> dict[str, Any]:
    """The v3 Mail Send body for one message, via the official helper classes."""
    mail = Mail(
        from_email=From(message.from_email, message.from_name or None),
        to_emails=To(message.to_email, message.to_name or None),
        subject=message.subject,
        plain_text_content=message.text,
        html_content=message.html,
    )
    if message.reply_to:
        mail.reply_to = ReplyTo(message.reply_to)
    for name, value in message.headers.items():
        mail.header = Header(name, value)
    for key, value in custom_args(message):
        mail.custom_arg = CustomArg(key, value)
    for category in message.categories[:10]:
        mail.category = Category(category)
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    payload: dict[str, Any] = mail.get()
    return payload


class PayloadBuilder:
    """Bodies for one sender: the helper lays out each envelope once, messages fill it in."""

    def __init__(self, sandbox: bool) -> None:
        self.sandbox = sandbox
        self._envelopes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._api_key_check = ValidateApiKey()

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        if not plain_values(message):
            return build_payload(message, self.sandbox)
        self._check_parts(message)
        body = dict(self._envelope_of(message))
        body["subject"] = message.subject
        body["personalizations"] = [{"to": [_to(message)]}]
        body["content"] = [
            {"type": "text/plain", "value": message.text},
            {"type": "text/html", "value": message.html},
        ]
        if message.headers:
            body["headers"] = dict(message.headers)
        body["custom_args"] = dict(custom_args(message))
        return body

    def shared(self, messages: Sequence[OutgoingMessage], group: Group) -> dict[str, Any]:
        """One body for a group of messages with the same envelope (``plain_values`` all):
        headers and custom_args every member has alike once for the request, the rest per
        personalization (SendGrid merges the two)."""
        members = [messages[index] for index in group.indices]
        headers = [m.headers for m in members]
        args = [dict(custom_args(m)) for m in members]
        common_headers = _common(headers)
        common_args = _common(args)
        personalizations = []
        for message, own_headers, own_args, substitutions in zip(
            members, headers, args, group.substitutions, strict=True
        ):
            self._check_parts(message)
            own: dict[str, Any] = {"to": [_to(message)], "subject": message.subject}
            if len(own_headers) > len(common_headers):
                own["headers"] = {k: v for k, v in own_headers.items() if k not in common_headers}
            if len(own_args) > len(common_args):
                own["custom_args"] = {k: v for k, v in own_args.items() if k not in common_args}
            if substitutions:
                own["substitutions"] = substitutions
            personalizations.append(own)
        body = dict(self._envelope_of(members[0]))
        body["personalizations"] = personalizations
        body["content"] = [
            {"type": "text/plain", "value": group.text},
            {"type": "text/html", "value": group.html},
        ]
        if common_headers:
            body["headers"] = common_headers
        if common_args:
            body["custom_args"] = common_args
        return body

    def _check_parts(self, message: OutgoingMessage) -> None:
        for part in (message.text, message.html):
            self._api_key_check.validate_message_text(part)  # as the helper's Content does

    def _envelope_of(self, message: OutgoingMessage) -> dict[str, Any]:
        key = (message.from_email, message.from_name, message.reply_to, message.categories[:10])
        envelope = self._envelopes.get(key)
        if envelope is None:
            envelope = self._envelopes[key] = self._envelope(message)
        return envelope

    def _envelope(self, message: OutgoingMessage) -> dict[str, Any]:
        envelope = build_payload(message, self.sandbox)
        for name in _VARIABLE:
            envelope.pop(name, None)
        return envelope


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """What every map of ``maps`` has with the same value."""
    first = maps[0]
    return {
        key: value for key, value in first.items() if all(other.get(key) == value for other in maps)
    }


def _to(message: OutgoingMessage) -> dict[str, str]:
    if message.to_name:
        return {"name": message.to_name, "email": message.to_email}
    return {"email": message.to_email}


def plain_values(message: OutgoingMessage) -> bool:
    """The helper would take every value as it is (else the whole helper builds it)."""
    return bool(
        message.subject
        and message.text
        and message.html
        and _PLAIN_ADDRESS.match(message.to_email)
        and _plain_sender(message.from_email)
        and "," not in message.to_name
        and ";" not in message.to_name
        and all(message.headers.values())
        and message.campaign  # the custom_args (the message id is a number: never empty)
        and message.occurrence
        and message.customer_id
    )


@lru_cache(maxsize=64)
def _plain_sender(address: str) -> bool:
    return _PLAIN_ADDRESS.match(address) is not None
