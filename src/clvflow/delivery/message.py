"""An email ready to leave: addresses, headers and both parts; and its RFC 5322 form."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from clvflow.rendering.render import header_text


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: int  # the ledger row
    campaign: str
    occurrence: str
    customer_id: str
    to_email: str
    to_name: str
    from_email: str
    from_name: str
    subject: str
    html: str
    text: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    # what it was rendered from (template and locale): messages of one layout share most
    # of their lines, so the SendGrid sender puts them in a request together
    layout: str = ""
    step: str = ""  # a journey's step

    def to_email_message(self, sent_at: dt.datetime | None = None) -> EmailMessage:
        """RFC 5322 message with a text and an HTML part. No header can hold CR or LF."""
        msg = EmailMessage()
        domain = self.from_email.rpartition("@")[2] or None
        msg["From"] = Address(display_name=header_text(self.from_name), addr_spec=self.from_email)
        msg["To"] = Address(display_name=header_text(self.to_name), addr_spec=self.to_email)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = header_text(self.subject)
        msg["Date"] = format_datetime(sent_at or dt.datetime.now(dt.UTC))
        msg["Message-ID"] = make_msgid(idstring=f"clv{self.message_id}", domain=domain)
        for name, value in self.headers.items():
            msg[name] = header_text(value)
        msg.set_content(self.text, subtype="plain", charset="utf-8")
        msg.add_alternative(self.html, subtype="html", charset="utf-8")
        return msg
