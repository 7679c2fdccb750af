"""Promo codes: unique per recipient, recorded, and single-use at the shop's checkout
(`clvflow promos redeem`): once only, not after expiry, not below the minimum order."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import pytest

from clvflow.cli.main import main
from clvflow.errors import ClvflowError
from clvflow.ledger.store import Ledger
from clvflow.personalization.promo import (
    ALPHABET,
    new_code,
    new_codes,
    promo_row,
    promo_rows,
    redeem,
)
from clvflow.project.campaign_spec import PromoSpec
from clvflow.project.layout import Project
from tests.conftest import ProjectFactory

ISSUED = dt.datetime(2026, 11, 23, 10, 0)
SPEC = PromoSpec(discount_percent=15, min_order=40, valid_days=14, prefix="BACK")


def _issue(root: Path, customers: list[str]) -> list[str]:
    rows = [promo_row(SPEC, "win-back", "once", c, "EUR", ISSUED) for c in customers]
    ledger = Ledger(Project.load(root).ledger_url)
    try:
        ledger.add_promo_codes(rows)
    finally:
        ledger.close()
    return [str(r["code"]) for r in rows]


@pytest.mark.parametrize("drawn", ["one at a time", "a batch at once"])
def test_codes_are_unique_and_readable(drawn: str) -> None:
    if drawn == "one at a time":
        codes = {new_code("BACK") for _ in range(20_000)}
    else:
        codes = set(new_codes("BACK", 20_000))
    assert len(codes) == 20_000
    for code in list(codes)[:100]:
        prefix, first, second = code.split("-")
        assert prefix == "BACK" and len(first) == len(second) == 4
        assert set(first + second) <= set(ALPHABET)  # no 0/O, 1/I/L to misread
    # every character equally likely: 160,000 draws, 5,161 expected each (σ ≈ 71)
    counts = Counter("".join(code[5:9] + code[10:] for code in codes))
    assert set(counts) == set(ALPHABET)
    expected = 20_000 * 8 / len(ALPHABET)
    assert all(abs(n - expected) < 0.1 * expected for n in counts.values()), counts


def test_a_code_expires_at_the_end_of_its_last_day() -> None:
    row = promo_row(SPEC, "win-back", "once", "C1", "EUR", ISSUED)
    assert row["expires_at"] == dt.datetime(2026, 12, 7, 23, 59, 59)


def test_a_batch_of_rows_has_one_code_per_recipient_in_order() -> None:
    pairs = [("once", f"C{i}") for i in range(500)]
    rows = promo_rows(SPEC, "win-back", pairs, "EUR", ISSUED)
    assert [(r["occurrence"], r["customer_id"]) for r in rows] == pairs
    assert len({r["code"] for r in rows}) == 500
    assert {r["expires_at"] for r in rows} == {dt.datetime(2026, 12, 7, 23, 59, 59)}
    assert promo_rows(SPEC, "win-back", [], "EUR", ISSUED) == []


def test_redeem_once_then_refused(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project()
    (code,) = _issue(root, ["C1"])
    args = ["promos", "redeem", code.lower(), "--project", str(root)]
    assert main([*args, "--order-total", "80", "--as-of", "2026-11-30 12:00"]) == 0
    assert f"{code}: 15% off, redeemed at 2026-11-30 12:00" in capsys.readouterr().out
    assert main([*args, "--order-total", "80", "--as-of", "2026-11-30 13:00"]) == 1
    err = capsys.readouterr().err
    assert "already used on 2026-11-30 12:00" in err and "Traceback" not in err
    main(["promos", "export", "--project", str(root)])
    assert ",2026-11-30 12:00:00" in capsys.readouterr().out  # redeemed_at in the export


@pytest.mark.parametrize(
    ("code", "total", "when", "message"),
    [
        ("NOPE-AAAA-BBBB", 80, "2026-11-30 12:00", "was never issued"),
        (None, 80, "2026-12-08 00:00", "expired on 2026-12-07"),
        (None, 39.99, "2026-11-30 12:00", "needs an order of at least 40 EUR"),
    ],
)
def test_redeem_refuses_unknown_expired_and_small_orders(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    code: str | None,
    total: float,
    when: str,
    message: str,
) -> None:
    root = make_project()
    (issued,) = _issue(root, ["C2"])
    args = ["promos", "redeem", code or issued, "--order-total", str(total)]
    assert main([*args, "--as-of", when, "--project", str(root)]) == 1
    assert message in capsys.readouterr().err
    # a refused attempt does not use the code up
    if code is None:
        assert (
            main(
                [
                    "promos",
                    "redeem",
                    issued,
                    "--order-total",
                    "50",
                    "--project",
                    str(root),
                    "--as-of",
                    "2026-12-01 09:00",
                ]
            )
            == 0
        )


def test_two_checkouts_racing_redeem_a_code_once(make_project: ProjectFactory) -> None:
    root = make_project()
    (code,) = _issue(root, ["C3"])
    ledger = Ledger(Project.load(root).ledger_url)
    outcomes: list[str] = []

    def checkout() -> None:
        try:
            redeem(ledger.engine, code, 100, dt.datetime(2026, 11, 30, 12, 0))
            outcomes.append("ok")
        except ClvflowError as exc:
            outcomes.append(exc.message)

    threads = [threading.Thread(target=checkout) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    assert outcomes.count("ok") == 1
    assert all("already used" in o for o in outcomes if o != "ok")
