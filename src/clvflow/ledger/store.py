"""The ledger's operations. Sending follows claim → mark sending → send → record:

1. ``claim`` inserts a ``claimed`` row per message; the unique rule on (campaign,
   occurrence, customer) means that of two runs racing, exactly one gets each row.
2. Just before a batch goes to the sender, ``mark_sending`` flips its rows to ``sending``.
3. ``record`` stores each outcome: sent, failed (with reason), or unknown (a timeout after
   the request left: it may have been delivered).

A run holds a lease it renews after every batch. When a run dies (crash, SIGKILL), the next
run of the campaign ``reconcile``s once the lease has expired: ``claimed`` rows were never
handed over, so they are released and planned again; ``sending`` rows become ``unknown`` and
are reported, never re-sent blindly.

:class:`Ledger` opens a transaction per call and hands it to the statements of
``claims``, ``outcomes``, ``history``, ``runs``, ``suppressions``, ``promos`` and ``events``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from clvflow.errors import LedgerError
from clvflow.ledger import claims, events, history, outcomes, promos, runs, suppressions
from clvflow.ledger.claims import Claim
from clvflow.ledger.database import open_engine, utcnow
from clvflow.ledger.outcomes import Outcome
from clvflow.ledger.outcomes import record as record_outcomes

__all__ = ["Claim", "Ledger", "Outcome", "open_ledger", "utcnow"]


class Ledger:
    """One ledger database (SQLAlchemy URL: SQLite by default, PostgreSQL for several workers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = open_engine(url)
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"cannot open the ledger: {type(exc).__name__}: {exc.args[0] if exc.args else ''}",
                hint="check 'ledger:' in clvflow.yaml or CLVFLOW_LEDGER_URL",
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        campaign: str,
        occurrence: str,
        as_of: dt.datetime,
        dry_run: bool,
        lease_seconds: float,
    ) -> None:
        with self.engine.begin() as con:
            runs.start_run(con, run_id, campaign, occurrence, as_of, dry_run, lease_seconds)

    def renew_lease(self, run_id: str, lease_seconds: float) -> None:
        with self.engine.begin() as con:
            runs.renew_lease(con, run_id, lease_seconds)

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.engine.begin() as con:
            runs.finish_run(con, run_id, status, summary)

    def reconcile(self, campaign: str) -> tuple[int, int]:
        """Clean up after dead runs of ``campaign`` (lease expired, still 'running').

        Returns (released, unknown): ``claimed`` rows are deleted so they are planned again;
        ``sending`` rows become ``unknown``. The dead runs are marked failed.
        """
        with self.engine.begin() as con:
            return runs.reconcile(con, campaign)

    # -- what stops a message -----------------------------------------------------------
    def suppressed(self, emails: Sequence[str]) -> dict[str, str]:
        """Lower-cased address → suppression reason, for the given addresses."""
        with self.engine.connect() as con:
            return suppressions.suppressed(con, emails)

    def suppress(
        self,
        email: str,
        reason: str,
        source: str,
        customer_id: str | None = None,
        campaign: str | None = None,
    ) -> bool:
        """Add a suppression; True if it is new."""
        with self.engine.begin() as con:
            return suppressions.suppress(con, email, reason, source, customer_id, campaign)

    def existing(
        self, campaign: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """(occurrence, customer) → status of rows already in the ledger for ``campaign``."""
        with self.engine.connect() as con:
            return history.existing(con, campaign, keys)

    def sent_since(
        self, customer_ids: Sequence[str], since: dt.datetime, campaign: str | None = None
    ) -> dict[str, int]:
        """Customer → marketing messages sent (or maybe sent) since ``since`` (naive UTC,
        like every time the ledger writes)."""
        with self.engine.connect() as con:
            return history.sent_since(con, customer_ids, since, campaign)

    def held_since(
        self, customer_ids: Sequence[str], since: dt.datetime, campaign: str
    ) -> dict[str, int]:
        """Customer → holdout rows of ``campaign`` since ``since`` (naive UTC)."""
        with self.engine.connect() as con:
            return history.sent_since(con, customer_ids, since, campaign, ("holdout",))

    # -- claim, mark, record ------------------------------------------------------------
    def claim(
        self,
        run_id: str,
        campaign: str,
        rows: Sequence[dict[str, Any]],
        status: str = "claimed",
        at: dt.datetime | None = None,
    ) -> list[Claim]:
        """Insert rows (occurrence, customer_id, email, kind, template, variant, locale),
        planned ``at`` (the run's clock, naive UTC; default now); return those this run
        won, in customer order."""
        return self.claim_columns(run_id, campaign, claims.columns_of(rows), status, at)

    def claim_columns(
        self,
        run_id: str,
        campaign: str,
        columns: Mapping[str, Sequence[Any]],
        status: str = "claimed",
        at: dt.datetime | None = None,
    ) -> list[Claim]:
        """:meth:`claim` for rows given column by column (every field of
        ``claims.CLAIM_FIELDS``, equally long)."""
        with self.engine.begin() as con:
            return claims.claim_columns(con, run_id, campaign, columns, status, at)

    def mark_sending(
        self, ids: Sequence[int], codes: Sequence[dict[str, Any]] = (), run_id: str | None = None
    ) -> list[int]:
        """These claimed messages are about to be handed to the sender; ``codes``, the promo
        codes they carry (rows as for :meth:`add_promo_codes`), are stored with the mark:
        one commit, and no code leaves before it is in the ledger. With ``run_id``, only the
        messages that run still holds are marked (a run whose lease ran out may have lost
        its claims to another run), with their codes. Returns the ids marked."""
        if not ids and not codes:
            return []
        with self.engine.begin() as con:
            marked = outcomes.mark_sending(con, ids, run_id) if ids else []
            held = {(occurrence, customer) for _, occurrence, customer in marked}
            if run_id is not None:
                codes = [c for c in codes if (c["occurrence"], c["customer_id"]) in held]
            promos.insert_codes(con, codes)
        return [message_id for message_id, _, _ in marked]

    def revert_sending(self, ids: Sequence[int]) -> None:
        """Messages marked ``sending`` that the sender never touched go back to ``claimed``."""
        if not ids:
            return
        with self.engine.begin() as con:
            outcomes.set_status(con, ids, "sending", "claimed")

    def record(
        self,
        outcomes: Sequence[Outcome],
        lease: tuple[str, float] | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """Store the outcome of messages this run handed over (a final outcome never changes),
        finished ``at`` (the run's clock, naive UTC; default now); with ``lease`` (run id,
        seconds), renew that run's lease in the same transaction."""
        with self.engine.begin() as con:
            record_outcomes(con, outcomes, at)
            if lease is not None:
                runs.renew_lease(con, *lease)

    def record_skips(
        self,
        run_id: str,
        campaign: str,
        items: Sequence[tuple[str, str, str]],
        at: dt.datetime | None = None,
    ) -> None:
        """(occurrence, customer_id, reason) for every member this run did not send to."""
        with self.engine.begin() as con:
            outcomes.record_skips(con, run_id, campaign, items, at)

    def release(self, ids: Sequence[int]) -> int:
        """Give back messages that were never handed over (the run stopped before them)."""
        with self.engine.begin() as con:
            return claims.release(con, ids)

    # -- promo codes --------------------------------------------------------------------
    def add_promo_codes(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store issued codes (code, campaign, occurrence, customer_id, discount_percent,
        min_order, currency, expires_at)."""
        with self.engine.begin() as con:
            promos.insert_codes(con, rows)

    def promo_codes_for(
        self, campaign: str, occurrence: str, customer_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Customer → the code already issued to them for (campaign, occurrence): every
        column, typed as SQLAlchemy reads it."""
        with self.engine.connect() as con:
            return promos.promo_codes_for(con, campaign, occurrence, customer_ids)

    def all_promo_codes(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Every issued code (oldest first), for the shop's checkout to honour."""
        with self.engine.connect() as con:
            return promos.all_promo_codes(con, campaign)

    # -- events -------------------------------------------------------------------------
    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Store events not seen before (by ``event_id``); returns the ids that were new."""
        with self.engine.begin() as con:
            return events.add_events(con, rows)

    def event_counts(self) -> dict[str, int]:
        with self.engine.connect() as con:
            return events.event_counts(con)

    # -- reading ------------------------------------------------------------------------
    def message_email(self, customer_id: str, campaign: str | None = None) -> str | None:
        """The address the latest message to ``customer_id`` went to."""
        with self.engine.connect() as con:
            return history.message_email(con, customer_id, campaign)

    def message_by_id(self, message_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as con:
            return history.message_by_id(con, message_id)

    def statuses_of(self, ids: Sequence[int]) -> dict[int, str]:
        """Message id → status (a retried batch checks what an earlier attempt handed over)."""
        with self.engine.connect() as con:
            return history.statuses_of(con, ids)

    def status_counts(self, campaign: str | None = None) -> dict[str, int]:
        with self.engine.connect() as con:
            return history.status_counts(con, campaign)


def open_ledger(url: str) -> Ledger:
    return Ledger(url)
