"""A local stand-in for SendGrid's v3 API, for tests, benchmarks and demos of the sender.

It is served by uvicorn on loopback, from a daemon thread of the process that starts it:

* ``POST /v3/mail/send``: bearer-key check (401, or 403 for a forbidden key), 413 for bodies
  of ``max_body_bytes`` (30 MB) or more, JSON parsing (400), validation against SendGrid's
  published schema plus the rules it cannot express (400 naming the field; see
  :mod:`.rules`), then 202 with a unique ``X-Message-Id`` (200 and nothing delivered in
  sandbox mode). Every accepted request is recorded for inspection.
* ``GET /v3/suppression/{unsubscribes,bounces,spam_reports}`` (paged with ``limit`` and
  ``offset``, filtered by ``start_time``/``end_time``) and
  ``GET /v3/asm/groups/{id}/suppressions``, seeded with
  :meth:`SendGridStandIn.add_suppression`.

Fault injection (:class:`FaultConfig`, changeable while running) produces 429s with
rate-limit headers, 500s, 503s, slow replies, dropped connections and "accepted, then
dropped" connections (the message is recorded, the client gets no reply: a real "maybe
sent"). Faults come from a seeded RNG, two draws per mail-send request, so a sequential
client sees the same sequence for the same seed; they are decided before acceptance, so a
429, 5xx or drop records nothing::

    with SendGridStandIn("SG.test", faults=FaultConfig(rate_429=0.1), seed=1) as sg:
        client = SendGridAPIClient("SG.test", host=sg.url)
        ...
        assert sg.deliveries_per_recipient()["ann@example.com"] == 1

Command line (see :mod:`.cli`): ``PYTHONPATH=tests python -m fakes.sendgrid_standin``.
"""

from .app import MAX_BODY_BYTES
from .cli import main, report
from .faults import FaultConfig, Outcome
from .rules import SendGridError, validate_mail_send
from .standin import AcceptedMessage, SendGridStandIn, SuppressionKind, personal_bodies

__all__ = [
    "MAX_BODY_BYTES",
    "AcceptedMessage",
    "FaultConfig",
    "Outcome",
    "SendGridError",
    "SendGridStandIn",
    "SuppressionKind",
    "main",
    "personal_bodies",
    "report",
    "validate_mail_send",
]
