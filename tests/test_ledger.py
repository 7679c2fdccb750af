"""The ledger on real SQLite and the machine's real PostgreSQL: one customer, one campaign
occurrence, one email — as a database guarantee, even when two runs race."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from threading import Barrier, Thread

import pytest
from sqlalchemy import create_engine, select, text

from clvflow.ledger.schema import promo_codes
from clvflow.ledger.store import Ledger, Outcome
from tests.conftest import POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    schema = f"clv_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as con:
        con.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as con:
            con.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _rows(n: int, occurrence: str = "once") -> list[dict[str, str]]:
    return [
        {
            "occurrence": occurrence,
            "customer_id": f"C{i}",
            "email": f"c{i}@example.com",
            "kind": "marketing",
        }
        for i in range(n)
    ]


def test_second_claim_of_the_same_occurrence_gets_nothing(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    first = ledger.claim("run-1", "win-back", _rows(5))
    second = ledger.claim("run-2", "win-back", _rows(5))
    assert [c.customer_id for c in first] == ["C0", "C1", "C2", "C3", "C4"]
    assert second == []
    other_occurrence = ledger.claim("run-3", "win-back", _rows(2, "2026-11-24"))
    assert len(other_occurrence) == 2
    ledger.close()


def test_racing_claims_split_customers_without_overlap(ledger_url: str) -> None:
    won: dict[str, list[str]] = {}
    barrier = Barrier(2, timeout=30)

    def claim(run_id: str) -> None:
        ledger = Ledger(ledger_url)
        barrier.wait()
        won[run_id] = [c.customer_id for c in ledger.claim(run_id, "vip", _rows(300))]
        ledger.close()

    threads = [Thread(target=claim, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(won) == {"run-0", "run-1"}, "a claiming thread failed"
    a, b = won["run-0"], won["run-1"]
    assert not set(a) & set(b)
    assert len(a) + len(b) == 300


def test_outcomes_and_reconciliation_after_a_dead_run(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    as_of = dt.datetime(2026, 11, 23)
    ledger.start_run("dead", "vip", "once", as_of, False, lease_seconds=0)
    ledger.start_run("alive", "vip", "once", as_of, False, lease_seconds=3600)
    claims = ledger.claim("dead", "vip", _rows(4))
    ledger.mark_sending([c.id for c in claims[:3]])
    ledger.record(
        [
            Outcome(claims[0].id, "sent", provider_id="x"),
            Outcome(claims[1].id, "failed", "400: bad"),
        ]
    )
    # claims[2] was handed to the sender (fate unknown); claims[3] never was
    time.sleep(0.01)
    assert ledger.reconcile("vip") == (1, 1)
    assert ledger.status_counts("vip") == {"sent": 1, "failed": 1, "unknown": 1}
    assert ledger.existing("vip", [("once", "C3")]) == {}  # released: planned again next time
    # a recorded outcome is final: recording again does not change it
    ledger.record([Outcome(claims[0].id, "failed", "late")])
    assert ledger.status_counts("vip")["sent"] == 1
    # the live run keeps its rows
    live = ledger.claim("alive", "vip", _rows(1, "2026-11-24"))
    assert ledger.reconcile("vip") == (0, 0)
    assert ledger.existing("vip", [("2026-11-24", "C0")]) == {("2026-11-24", "C0"): "claimed"}
    assert len(live) == 1
    ledger.close()


def test_suppression_is_case_insensitive_and_idempotent(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.suppress("Ann@Example.com", "unsubscribed", "web") is True
    assert ledger.suppress("ann@example.com", "bounced", "webhook") is False
    assert ledger.suppressed(["ANN@example.com", "bob@example.com"]) == {
        "ann@example.com": "unsubscribed"
    }
    ledger.close()


def test_claims_and_outcomes_beyond_one_statement_are_all_written(ledger_url: str) -> None:
    # more rows than one multi-row statement holds (store.WRITE_VARIABLES), half of them
    # already claimed by another run; then every outcome in one call, one message twice
    ledger = Ledger(ledger_url)
    taken = ledger.claim("run-0", "win-back", _rows(12_000)[::2])
    won = ledger.claim("run-1", "win-back", _rows(12_000))
    assert len(taken) == 6_000
    assert sorted(c.customer_id for c in won) == sorted(f"C{i}" for i in range(1, 12_000, 2))
    outcomes = [Outcome(c.id, "sent", None, f"sg-{c.id}") for c in won]
    outcomes.append(Outcome(won[0].id, "failed", "a second outcome for the same message"))
    ledger.record(outcomes)
    assert ledger.status_counts("win-back") == {"sent": 6_000, "claimed": 6_000}
    statuses = ledger.statuses_of([won[0].id, won[-1].id, taken[0].id])
    assert statuses == {won[0].id: "sent", won[-1].id: "sent", taken[0].id: "claimed"}
    with ledger.engine.connect() as con:
        row = con.execute(
            text("SELECT status, reason, provider_id, finished_at FROM messages WHERE id = :i"),
            {"i": won[-1].id},
        ).one()
    assert (row[0], row[1], row[2]) == ("sent", None, f"sg-{won[-1].id}")
    assert row[3] is not None
    ledger.close()


def test_promo_codes_beyond_one_statement_are_all_stored(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    expires = dt.datetime(2027, 1, 31, 23, 59)
    rows = [
        {
            "code": f"WB-{i:05d}", "campaign": "win-back", "occurrence": "once",
            "customer_id": f"C{i}", "discount_percent": 15.0, "min_order": 40.0,
            "currency": "EUR", "expires_at": expires,
        }
        for i in range(4_000)
    ]  # fmt: skip
    ledger.add_promo_codes(rows)
    stored = ledger.promo_codes_for("win-back", "once", [f"C{i}" for i in range(4_000)])
    assert len(stored) == 4_000
    assert stored["C3999"]["code"] == "WB-03999"
    assert stored["C0"]["expires_at"] == expires
    # read back as SQLAlchemy reads the table: every column, with its type
    with ledger.engine.connect() as con:
        read = con.execute(select(promo_codes).where(promo_codes.c.customer_id == "C7")).one()
    assert stored["C7"] == dict(read._mapping)
    assert [type(stored["C7"][k]) for k in ("discount_percent", "expires_at", "redeemed_at")] == [
        float, dt.datetime, type(None)
    ]  # fmt: skip
    assert ledger.promo_codes_for("win-back", "other", ["C7"]) == {}
    ledger.close()
