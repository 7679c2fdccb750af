"""Look-back windows in planning: the ledger writes naive UTC, a run's ``as_of`` is naive
shop-local time; ``every: N days`` and the frequency cap must compare the two in one frame.

Each case puts an earlier message one hour inside or one hour outside the window, in shops
west and east of UTC, so a comparison that mixed local and UTC times (off by 8 or 13 hours)
would put it on the wrong side. The expected sides are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update

from clvflow.ledger.schema import messages
from clvflow.ledger.store import Ledger
from clvflow.planning.plan import ledger_time, plan_run
from clvflow.project.campaign_spec import CampaignSpec, Every
from clvflow.project.config import FrequencyCap

AS_OF = dt.datetime(2026, 11, 23, 10, 0)  # shop-local

# (time zone, UTC time one hour *outside* the 7-day window, one hour *inside* it)
#   Los Angeles in November is UTC-8: as_of = 18:00 UTC on the 23rd, the window opens
#   2026-11-16 10:00 local = 18:00 UTC.
#   Auckland in November is UTC+13 (daylight time): as_of = 21:00 UTC on the 22nd, the
#   window opens 2026-11-16 10:00 local = 2026-11-15 21:00 UTC.
#   Budapest in November is UTC+1: the window opens 2026-11-16 09:00 UTC.
CASES = [
    ("America/Los_Angeles", dt.datetime(2026, 11, 16, 17, 0), dt.datetime(2026, 11, 16, 19, 0)),
    ("Pacific/Auckland", dt.datetime(2026, 11, 15, 20, 0), dt.datetime(2026, 11, 15, 22, 0)),
    ("Europe/Budapest", dt.datetime(2026, 11, 16, 8, 0), dt.datetime(2026, 11, 16, 10, 0)),
]


def members() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["OUT", "IN", "NEW"],
            "email": ["out@example.com", "in@example.com", "new@example.com"],
        }
    )


def earlier_message(
    ledger: Ledger, campaign: str, occurrence: str, customer: str, at: dt.datetime
) -> None:
    """A message sent at ``at`` (naive UTC), as a finished earlier run leaves it."""
    [claim] = ledger.claim(
        "earlier", campaign, [{"occurrence": occurrence, "customer_id": customer,
                               "email": f"{customer.lower()}@example.com"}],
    )  # fmt: skip
    with ledger.engine.begin() as con:
        con.execute(
            update(messages)
            .where(messages.c.id == claim.id)
            .values(status="sent", planned_at=at, finished_at=at)
        )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.close()


@pytest.mark.parametrize(("timezone", "outside", "inside"), CASES)
def test_every_n_days_counts_back_from_as_of_in_the_shops_time_zone(
    ledger: Ledger, timezone: str, outside: dt.datetime, inside: dt.datetime
) -> None:
    spec = CampaignSpec(segment="s", template="t", resend=Every(every="7 days"))
    earlier_message(ledger, "win-back", "2026-11-16", "OUT", outside)
    earlier_message(ledger, "win-back", "2026-11-16", "IN", inside)
    plan = plan_run(
        "win-back", spec, members(), ledger, AS_OF, marketing=True, cap=None, timezone=timezone
    )
    assert sorted(plan.send["customer_id"]) == ["NEW", "OUT"]
    assert plan.already_sent == 1  # IN: its last message is 6 days 23 hours old
    ledger.close()


@pytest.mark.parametrize(("timezone", "outside", "inside"), CASES)
def test_the_frequency_cap_counts_back_from_as_of_in_the_shops_time_zone(
    ledger: Ledger, timezone: str, outside: dt.datetime, inside: dt.datetime
) -> None:
    cap = FrequencyCap(max=1, per="7 days")
    spec = CampaignSpec(segment="s", template="t", resend="once")
    earlier_message(ledger, "other-campaign", "once", "OUT", outside)
    earlier_message(ledger, "other-campaign", "once", "IN", inside)
    plan = plan_run(
        "vip", spec, members(), ledger, AS_OF, marketing=True, cap=cap, timezone=timezone
    )
    assert sorted(plan.send["customer_id"]) == ["NEW", "OUT"]
    assert plan.skipped_by_reason() == {"frequency_cap": 1}
    assert [cid for _, cid, _ in plan.skips] == ["IN"]
    ledger.close()


def test_ledger_time_across_daylight_saving_changes() -> None:
    # Budapest leaves daylight time on 2026-10-25 at 03:00 (back to 02:00): 01:30 is UTC+2,
    # 12:00 that day is UTC+1; in the spring (2026-03-29) 01:30 is still UTC+1.
    assert ledger_time(dt.datetime(2026, 10, 25, 1, 30), "Europe/Budapest") == dt.datetime(
        2026, 10, 24, 23, 30
    )
    assert ledger_time(dt.datetime(2026, 10, 25, 12, 0), "Europe/Budapest") == dt.datetime(
        2026, 10, 25, 11, 0
    )
    assert ledger_time(dt.datetime(2026, 3, 29, 1, 30), "Europe/Budapest") == dt.datetime(
        2026, 3, 29, 0, 30
    )
    assert ledger_time(AS_OF, "UTC") == AS_OF
