"""The outbox backend: every message becomes an ``.eml`` file, and ``index.html`` links them.

Files live at ``outbox/<campaign>/<occurrence>/<customer>.eml`` and are written atomically
(temporary file, then rename), so a crash never leaves half a message behind.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from collections.abc import Sequence
from email import policy
from email.parser import BytesParser
from functools import partial
from pathlib import Path

from clvflow.delivery.base import Send, SendResult
from clvflow.delivery.message import OutgoingMessage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "_"


class OutboxSender:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: OutgoingMessage) -> Path:
        return (
            self.directory
            / safe_name(message.campaign)
            / safe_name(message.occurrence)
            / f"{safe_name(message.customer_id)}.eml"
        )

    def prepare(self, messages: Sequence[OutgoingMessage]) -> Send:
        return partial(self.send_batch, list(messages))

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        now = dt.datetime.now(dt.UTC)
        for message in messages:
            path = self.path_for(message)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                data = message.to_email_message(sent_at=now).as_bytes(policy=policy.SMTP)
                tmp = path.with_suffix(".eml.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            except (OSError, ValueError) as exc:
                results.append(SendResult(message.message_id, "failed", reason=str(exc)))
                continue
            rel = path.relative_to(self.directory).as_posix()
            results.append(SendResult(message.message_id, "sent", provider_id=f"outbox:{rel}"))
        return results

    def close(self) -> None:
        write_index(self.directory)


def write_index(directory: Path) -> Path:
    """(Re)write ``index.html``: one row per message, newest campaigns first."""
    parser = BytesParser(policy=policy.default)
    rows = []
    for path in sorted(directory.rglob("*.eml")):
        with path.open("rb") as handle:
            headers = parser.parse(handle, headersonly=True)
        rel = path.relative_to(directory).as_posix()
        campaign = rel.split("/", 1)[0]
        rows.append(
            '<tr><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>'.format(
                html.escape(campaign),
                html.escape(str(headers.get("To", ""))),
                html.escape(rel),
                html.escape(str(headers.get("Subject", ""))),
            )
        )
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>clvflow outbox</title>'
        "<style>body{font-family:sans-serif;margin:2em}"
        "td{padding:2px 8px;border-bottom:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>Outbox</h1><p>{len(rows)} messages. Open an .eml file with a mail client.</p>"
        "<table><tr><th>Campaign</th><th>To</th><th>Subject</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
