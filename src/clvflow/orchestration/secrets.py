"""The SendGrid key for flows: ``SENDGRID_API_KEY``, else the Prefect Secret block named by
``delivery.sendgrid.secret_block``; and the sender opened with it."""

from __future__ import annotations

import os

from clvflow.delivery.base import Sender
from clvflow.delivery.senders import KEY_ENV, open_sender
from clvflow.project.layout import Project


def sendgrid_key(project: Project) -> str | None:
    """The key from the environment, else from the Secret block; None when neither has one
    (opening the sender then says what to set)."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key or project.config.delivery.backend != "sendgrid":
        return key or None
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(project.config.delivery.sendgrid.secret_block).get()  # type: ignore[union-attr]
    except Exception:  # no block, no server: opening the sender says what to set
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def flow_sender(project: Project) -> Sender:
    """The configured backend, its key looked up in Prefect too."""
    return open_sender(project, api_key=sendgrid_key(project))
