"""Pick the delivery backend configured for a project."""

from __future__ import annotations

import os

from clvflow.delivery.base import Sender
from clvflow.delivery.outbox import OutboxSender
from clvflow.delivery.process import SenderProcess, SendGridSettings
from clvflow.errors import DeliveryError
from clvflow.project.layout import Project

KEY_ENV = "SENDGRID_API_KEY"


def sendgrid_api_key(block: str) -> str:
    """The key from ``SENDGRID_API_KEY``, else from the Prefect Secret block ``block``."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return key
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(block).get()  # type: ignore[union-attr]
    except Exception:  # no block, no server: say what to set
        value = None
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise DeliveryError(
        "no SendGrid API key",
        hint=f"set {KEY_ENV}, or save a Prefect Secret block named '{block}'",
    )


def open_sender(project: Project, *, own_process: bool = False) -> Sender:
    """The configured backend. ``own_process``: the SendGrid sender runs in a child process
    (:mod:`clvflow.delivery.process`), so a caller can render while a batch is sent; it
    starts while the caller goes on (``wait_ready`` before the first claim)."""
    delivery = project.config.delivery
    if delivery.backend == "outbox":
        return OutboxSender(project.outbox_dir)
    sg = delivery.sendgrid
    settings = SendGridSettings(
        api_key=sendgrid_api_key(sg.secret_block),
        api_host=sg.api_host,
        timeout=sg.timeout_seconds,
        sandbox=sg.sandbox,
        concurrency=sg.concurrency,
        per_request=sg.recipients_per_request,
    )
    return SenderProcess(settings, wait=False) if own_process else settings.open()
