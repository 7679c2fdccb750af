"""The sender seam: prepare a batch of messages (what can be done before anything leaves),
send it, get one result per message; close."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from clvflow.delivery.message import OutgoingMessage
from clvflow.errors import DeliveryError


@dataclass(frozen=True)
class SendResult:
    message_id: int
    status: str  # sent | failed | unknown (the request left; the reply never came)
    provider_id: str | None = None
    reason: str | None = None


class SendAbortedError(DeliveryError):
    """The backend refused the whole run (e.g. 401 bad key, 403 unverified sender).

    ``results`` holds the outcomes of the messages handled before the stop."""

    def __init__(self, message: str, results: list[SendResult], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.results = results


Send = Callable[[], list[SendResult]]  # sends a prepared batch: one result per message


class Sender(Protocol):
    name: str

    def prepare(self, messages: Sequence[OutgoingMessage]) -> Send:
        """Make the batch ready to leave (nothing leaves yet); the call returned sends it.
        Sending never raises for one bad message: that message's result is its failure."""
        ...

    def close(self) -> None: ...
