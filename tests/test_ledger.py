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
from sqlalchemy.exc import IntegrityError

from clvflow.errors import LedgerError
from clvflow.ledger.schema import promo_codes, runs
from clvflow.ledger.store import Ledger, Outcome, utcnow
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
    # half of the rows already claimed by another run; then every outcome in one call, one
    # message twice (the first outcome stands)
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


def _columns(customers: list[str], occurrence: str = "once") -> dict[str, list[str | None]]:
    return {
        "occurrence": [occurrence] * len(customers),
        "customer_id": list(customers),
        "email": [f"{c.lower()}@example.com" for c in customers],
        "kind": ["marketing"] * len(customers),
        "template": ["win_back"] * len(customers),
        "variant": [None] * len(customers),
        "locale": ["en"] * len(customers),
    }


def test_racing_claims_in_opposite_orders_split_customers(ledger_url: str) -> None:
    # the same 20,000 keys, one run listing them backwards: on PostgreSQL two transactions
    # inserting the same unique keys in opposite orders would wait for each other
    customers = [f"C{i:05d}" for i in range(20_000)]
    orders = {"run-0": customers, "run-1": customers[::-1]}
    won: dict[str, list[str]] = {}
    failures: list[BaseException] = []
    barrier = Barrier(2, timeout=30)

    def claim(run_id: str) -> None:
        ledger = Ledger(ledger_url)
        try:
            barrier.wait()
            claims = ledger.claim_columns(run_id, "vip", _columns(orders[run_id]))
            won[run_id] = [c.customer_id for c in claims]
        except BaseException as exc:
            failures.append(exc)
        finally:
            ledger.close()

    Ledger(ledger_url).close()  # the tables exist before the race
    threads = [Thread(target=claim, args=(run_id,)) for run_id in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    a, b = won["run-0"], won["run-1"]
    assert not set(a) & set(b)
    assert sorted(a + b) == customers
    assert a == sorted(a) and b == sorted(b)  # each run's claims in customer order


def test_claims_come_back_in_customer_order_with_their_rows(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    before = utcnow()
    claims = ledger.claim("run-1", "vip", _rows(12)[::-1])
    assert [c.customer_id for c in claims] == sorted(f"C{i}" for i in range(12))
    assert {c.email for c in claims} == {f"c{i}@example.com" for i in range(12)}
    row = ledger.message_by_id(claims[0].id)
    assert row is not None
    assert (row["campaign"], row["status"], row["run_id"], row["kind"]) == (
        "vip", "claimed", "run-1", "marketing"
    )  # fmt: skip
    # times are stored as naive UTC and read back as datetimes
    assert isinstance(row["planned_at"], dt.datetime) and row["planned_at"].tzinfo is None
    assert before <= row["planned_at"] <= utcnow()
    assert ledger.claim("run-1", "vip", []) == claims  # the run's claims, again
    with pytest.raises(ValueError, match="unknown message fields"):
        ledger.claim("run-1", "vip", [{"customer_id": "C1", "colour": "red"}])
    with pytest.raises(ValueError, match="differ in length"):
        ledger.claim_columns("run-1", "vip", {**_columns(["C1", "C2"]), "email": ["x@y.z"]})
    ledger.close()


@pytest.mark.slow
def test_reads_and_status_changes_for_a_hundred_thousand_messages(ledger_url: str) -> None:
    # more keys than SQLite (32,766) or psycopg (65,535) bind as values of one statement
    keys = 100_000
    ledger = Ledger(ledger_url)
    customers = [f"C{i:06d}" for i in range(keys)]
    claims = ledger.claim_columns("run-1", "win-back", _columns(customers))
    ids = [c.id for c in claims]
    assert len(ids) == keys
    wanted = [("once", c) for c in customers] + [("other", "C000001"), ("once", "nobody")]
    assert ledger.existing("win-back", wanted) == {("once", c): "claimed" for c in customers}
    assert ledger.statuses_of(ids) == dict.fromkeys(ids, "claimed")
    assert ledger.sent_since(customers, utcnow() - dt.timedelta(hours=1)) == dict.fromkeys(
        customers, 1
    )
    ledger.mark_sending(ids[1:])
    ledger.revert_sending(ids[2:])
    assert ledger.status_counts("win-back") == {"claimed": keys - 1, "sending": 1}
    assert ledger.release(ids) == keys - 1  # a message handed over is not given back
    assert ledger.statuses_of(ids) == {ids[1]: "sending"}
    emails = [f"{c.lower()}@example.com" for c in customers]
    for email in emails[::10_000]:
        ledger.suppress(email, "bounced", "webhook")
    assert ledger.suppressed([e.upper() for e in emails]) == dict.fromkeys(
        emails[::10_000], "bounced"
    )
    ledger.close()


def test_sent_since_counts_marketing_messages_in_flight_or_sent(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    start = utcnow()
    claims = ledger.claim("run-1", "vip", _rows(5))
    ledger.claim("run-1", "vip", [{**_rows(1)[0], "occurrence": "2026-11-24"}])
    ledger.claim("run-1", "receipt", [{**_rows(1)[0], "kind": "transactional"}])
    ledger.claim("run-1", "vip", _rows(5, "held"), status="holdout")
    ledger.mark_sending([c.id for c in claims])
    ledger.record(
        [
            Outcome(claims[1].id, "sent"),
            Outcome(claims[2].id, "failed", "400: bad"),
            Outcome(claims[3].id, "unknown", "timeout"),
        ]
    )
    customers = [f"C{i}" for i in range(6)]
    assert ledger.sent_since(customers, start) == {"C0": 2, "C1": 1, "C3": 1, "C4": 1}
    assert ledger.sent_since(customers, start, "receipt") == {}
    assert ledger.sent_since(customers, utcnow() + dt.timedelta(seconds=1)) == {}
    ledger.close()


def test_promo_codes_are_stored_in_the_transaction_that_marks_the_batch(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    claims = ledger.claim("run-1", "win-back", _rows(3))
    expires = dt.datetime(2027, 1, 31, 23, 59, 59)

    def code(claim_index: int, code: str) -> dict[str, object]:
        return {
            "code": code, "campaign": "win-back", "occurrence": "once",
            "customer_id": claims[claim_index].customer_id, "discount_percent": 15,
            "min_order": 40.0, "currency": "EUR", "expires_at": expires,
        }  # fmt: skip

    ledger.mark_sending([claims[0].id], [code(0, "WB-1")])
    # a batch whose codes cannot be stored is not marked either
    with pytest.raises(IntegrityError):
        ledger.mark_sending([claims[1].id, claims[2].id], [code(1, "WB-2"), code(2, "WB-1")])
    assert ledger.statuses_of([c.id for c in claims]) == {
        claims[0].id: "sending", claims[1].id: "claimed", claims[2].id: "claimed"
    }  # fmt: skip
    (stored,) = ledger.all_promo_codes("win-back")
    assert (stored["code"], stored["customer_id"], stored["expires_at"]) == (
        "WB-1", "C0", expires
    )  # fmt: skip
    assert stored["discount_percent"] == 15.0 and isinstance(stored["created_at"], dt.datetime)
    with pytest.raises(ValueError, match="unknown promo code fields"):
        ledger.add_promo_codes([{**code(1, "WB-3"), "colour": "red"}])
    ledger.close()


def test_recording_renews_the_lease_in_the_same_transaction(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.start_run("run-1", "vip", "once", dt.datetime(2026, 11, 23), False, lease_seconds=0)
    claims = ledger.claim("run-1", "vip", _rows(2))
    ledger.mark_sending([c.id for c in claims])
    ledger.record([], lease=("run-1", 3600))  # nothing to record: the lease still moves
    ledger.record([Outcome(claims[0].id, "sent", subject="Hi", locale="hu")], ("run-1", 3600))
    with ledger.engine.connect() as con:
        lease_until = con.execute(select(runs.c.lease_until)).scalar_one()
    assert lease_until > utcnow() + dt.timedelta(minutes=59)
    assert ledger.reconcile("vip") == (0, 0)  # alive: its rows stay as they are
    row = ledger.message_by_id(claims[0].id)
    assert row is not None
    assert (row["status"], row["subject"], row["locale"]) == ("sent", "Hi", "hu")
    assert isinstance(row["finished_at"], dt.datetime)
    ledger.finish_run("run-1", "finished", {"sent": 1})
    with ledger.engine.connect() as con:
        status, summary = con.execute(select(runs.c.status, runs.c.summary)).one()
    assert (status, summary) == ("finished", '{"sent": 1}')
    ledger.close()


def test_events_are_stored_once_and_messages_found_by_customer(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    claims = ledger.claim("run-1", "vip", _rows(2))
    event = {"event_id": "e1", "event": "open", "email": "c0@example.com",
             "message_id": claims[0].id, "campaign": "vip", "customer_id": "C0"}  # fmt: skip
    assert ledger.add_events([event, {**event, "event_id": "e2", "event": "click"}]) == [
        "e1", "e2"
    ]  # fmt: skip
    assert ledger.add_events([event]) == []
    assert ledger.event_counts() == {"open": 1, "click": 1}
    assert ledger.message_email("C1") == "c1@example.com"
    assert ledger.message_email("C1", campaign="other") is None
    assert ledger.message_by_id(10**9) is None
    ledger.close()


def test_nothing_asked_nothing_done(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert ledger.claim_columns("run-1", "vip", _columns([])) == []
    assert ledger.existing("vip", []) == {}
    assert ledger.statuses_of([]) == {}
    assert ledger.sent_since([], utcnow()) == {}
    assert ledger.suppressed(["", "nobody@example.com"]) == {}
    assert ledger.promo_codes_for("vip", "once", []) == {}
    assert ledger.release([]) == 0
    ledger.mark_sending([])
    ledger.revert_sending([])
    ledger.record([])
    ledger.record_skips("run-1", "vip", [])
    ledger.add_promo_codes([])
    assert ledger.status_counts() == {}
    ledger.close()


def test_workers_opening_a_new_ledger_at_once_all_get_it(ledger_url: str) -> None:
    barrier = Barrier(4, timeout=30)
    failures: list[BaseException] = []

    def open_it() -> None:
        try:
            barrier.wait()
            Ledger(ledger_url).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    ledger = Ledger(ledger_url)
    assert ledger.claim("run-1", "vip", _rows(1))[0].customer_id == "C0"
    ledger.close()


def test_sqlite_ledger_is_durable_and_waits_for_other_writers(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with ledger.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert con.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
    ledger.close()
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(f"sqlite:///{tmp_path / 'missing' / 'ledger.db'}")


def test_a_run_that_lost_its_claims_marks_none_of_them(ledger_url: str) -> None:
    """A run whose lease ran out loses its claims to reconciliation and another run; when
    it comes back to mark its batch ``sending``, nothing of that batch is its to send (and
    none of its promo codes is stored), while the run that claimed them anew marks them."""
    ledger = Ledger(ledger_url)
    as_of = dt.datetime(2026, 11, 23)
    ledger.start_run("slow", "vip", "once", as_of, False, lease_seconds=0)
    lost = ledger.claim("slow", "vip", _rows(3))
    time.sleep(0.01)
    assert ledger.reconcile("vip") == (3, 0)  # the slow run's claims are released
    ledger.start_run("other", "vip", "once", as_of, False, lease_seconds=3600)
    taken = ledger.claim("other", "vip", _rows(3))
    assert len(taken) == 3
    code = {
        "code": "VIP-1",
        "campaign": "vip",
        "occurrence": taken[0].occurrence,
        "customer_id": taken[0].customer_id,
        "discount_percent": 10,
        "min_order": 0,
        "currency": "EUR",
        "expires_at": dt.datetime(2026, 12, 31),
    }
    assert ledger.mark_sending([c.id for c in lost], [code], run_id="slow") == []
    assert ledger.all_promo_codes("vip") == []
    ids = [c.id for c in taken]
    assert sorted(ledger.mark_sending(ids, [code], run_id="other")) == sorted(ids)
    assert [c["code"] for c in ledger.all_promo_codes("vip")] == ["VIP-1"]
    assert ledger.status_counts("vip") == {"sending": 3}
    ledger.close()
