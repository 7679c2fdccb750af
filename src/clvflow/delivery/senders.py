"""Open the delivery backend configured for a project."""

from __future__ import annotations

import os

from clvflow.delivery.base import Sender
from clvflow.delivery.outbox import OutboxSender
from clvflow.delivery.sendgrid import SendGridSender
from clvflow.errors import DeliveryError
from clvflow.project.layout import Project

KEY_ENV = "SENDGRID_API_KEY"


def sendgrid_api_key(project: Project, given: str | None = None) -> str:
    """``given`` (the flows look it up in a Prefect Secret block), else ``SENDGRID_API_KEY``."""
    key = (given or os.environ.get(KEY_ENV, "")).strip()
    if not key:
        block = project.config.delivery.sendgrid.secret_block
        raise DeliveryError(
            "no SendGrid API key",
            hint=f"set {KEY_ENV}, or save a Prefect Secret block named '{block}'",
        )
    return key


def open_sender(project: Project, api_key: str | None = None) -> Sender:
    """The configured backend; the SendGrid key as :func:`sendgrid_api_key` finds it."""
    delivery = project.config.delivery
    if delivery.backend == "outbox":
        return OutboxSender(project.outbox_dir)
    sg = delivery.sendgrid
    return SendGridSender(
        sendgrid_api_key(project, api_key),
        sg.api_host,
        timeout=sg.timeout_seconds,
        sandbox=sg.sandbox,
        concurrency=sg.concurrency,
        per_request=sg.recipients_per_request,
    )
