"""A journey's simulated past: each entry's steps, decided as the journey's hourly runs
decide them (``journeys/decide.py``), step by step for all entries at once.

A step is decided at the first run at or after it is due (its ``wait`` after the step
before was decided, or its ``at`` date) and after the step before it: skipped as
``expired`` past its ``until``, as ``where`` when its condition does not hold, as
``unless`` when the customer ordered since entering; otherwise sent at the first run
inside the customer's send window. An entry of a journey that exits on orders ends at
the first run after an order; one that no message can reach ends with that reason at the
step; one whose last step is decided is ``completed``; held-out entries end as they
enter. What is not decided before ``until`` (the real runs' first instant) stays open,
at its step, for the real runs to carry on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from clvflow.demo.timing import first_run_in_window, next_run
from clvflow.project.journey_spec import JourneySpec, parse_period

# step index, the entries' (customer_id, at) at its decision → whether ``where`` holds
WhereTest = Callable[[int, pd.DataFrame], pd.Series]

STEP_COLUMNS = ("entry", "occurrence", "customer_id", "step", "status", "reason", "at")


@dataclass(frozen=True)
class JourneyPast:
    """``entries``: entry, occurrence, customer_id, entered_at, holdout, step, step_at,
    exited_at, exit_reason (times shop-local). ``steps``: a row per step message
    (``STEP_COLUMNS``; status sent or skipped)."""

    entries: pd.DataFrame
    steps: pd.DataFrame

    def sent_at(self, step: str) -> pd.Series:
        """When each entry's ``step`` message was sent (NaT if it was not), by entry."""
        rows = self.steps[(self.steps["step"] == step) & (self.steps["status"] == "sent")]
        out = pd.Series(pd.NaT, index=self.entries["entry"], dtype="datetime64[us]")
        out.loc[rows["entry"].to_numpy()] = rows["at"].to_numpy()
        return out


def _first_order_after(entries: pd.DataFrame, orders: pd.DataFrame) -> pd.Series:
    """Per entry: the first order the customer placed after entering (NaT if none)."""
    joined = entries[["entry", "customer_id", "entered_at"]].merge(
        orders[["customer_id", "placed_at"]], on="customer_id"
    )
    after = joined[joined["placed_at"] > joined["entered_at"]]
    first = after.groupby("entry")["placed_at"].min()
    return first.reindex(entries["entry"]).astype("datetime64[us]")


def _period(text: str | None) -> pd.DateOffset:
    shift = parse_period(text) if text else parse_period("0 days")
    return pd.DateOffset(
        years=shift.years, months=shift.months, days=shift.days, hours=shift.hours,
        minutes=shift.minutes,
    )  # fmt: skip


class _Walk:
    """The entries' state while their steps are decided one after the other."""

    def __init__(
        self, spec: JourneySpec, entries: pd.DataFrame, orders: pd.DataFrame, info: pd.DataFrame
    ) -> None:
        self.spec = spec
        self.frame = entries.reset_index(drop=True).copy()
        self.info = info
        n = len(self.frame)
        customers = self.frame["customer_id"]
        self.zone = customers.map(info["timezone"])
        self.blocked = customers.map(info["reason"]).fillna("unknown_customer").to_numpy()
        self.first_order = _first_order_after(self.frame, orders).to_numpy()
        self.exit_run = next_run(pd.Series(self.first_order, dtype="datetime64[us]")).to_numpy()
        self.step = np.zeros(n, dtype=np.int64)
        self.step_at = self.frame["entered_at"].to_numpy().copy()
        self.exited = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
        self.reason = np.full(n, None, dtype=object)
        held = self.frame["holdout"].astype(bool).to_numpy()
        self.exited[held], self.reason[held] = self.step_at[held], "holdout"
        self.going = ~held
        self.rows: list[pd.DataFrame] = []

    def end(self, mask: npt.NDArray[np.bool_], at: npt.NDArray[Any], why: Any) -> None:
        self.exited[mask], self.reason[mask] = at[mask], why
        self.going[mask] = False

    def exit_on_order(self, before: npt.NDArray[Any], until: pd.Timestamp) -> None:
        """Entries whose first order after entering was seen by a run up to ``before``."""
        if self.spec.exit.on_order:
            seen = self.going & (self.exit_run <= before) & (self.exit_run < until)
            self.end(seen, self.exit_run, "ordered")

    def due(self, index: int) -> npt.NDArray[Any]:
        step = self.spec.steps[index]
        if step.at is not None:
            anchor = self.frame["customer_id"].map(self.info[step.at.attribute])
            return (pd.to_datetime(anchor) + _period(step.at.offset)).to_numpy()
        return (pd.Series(self.step_at) + _period(step.wait)).to_numpy()

    def skips(
        self,
        index: int,
        decided: npt.NDArray[np.bool_],
        run: npt.NDArray[Any],
        due: npt.NDArray[Any],
        where: WhereTest,
    ) -> npt.NDArray[Any]:
        """The skip reason of each decided entry at step ``index`` (None: it goes)."""
        step = self.spec.steps[index]
        skip = np.full(len(run), None, dtype=object)
        if step.until is not None:
            last = (pd.Series(due) + _period(step.until)).to_numpy()
            skip[decided & (run > last)] = "expired"
        if step.where is not None:
            asked = decided & pd.isna(skip)
            probe = pd.DataFrame({"customer_id": self.frame["customer_id"], "at": run})[asked]
            holds = where(index, probe).to_numpy(dtype=bool)
            skip[np.flatnonzero(asked)[~holds]] = "where"
        unless = step.unless
        if unless is not None and (unless.ordered or unless.promo_redeemed):
            # a code is only redeemed by an order: both read as "ordered since entering"
            ordered = pd.notna(self.first_order) & (self.first_order <= run)
            skip[decided & pd.isna(skip) & ordered] = "unless"
        return skip

    def decide(self, index: int, until: pd.Timestamp, timezone: str, where: WhereTest) -> None:
        """Decide step ``index`` for every entry still going (see the module's docstring)."""
        due = self.due(index)
        run = next_run(pd.Series(np.maximum(due, self.step_at), dtype="datetime64[us]"))
        run_at = run.to_numpy()
        self.exit_on_order(run_at, until)
        self.going &= run_at < until  # the others are left at this step for the real runs
        decided = self.going.copy()
        skip = self.skips(index, decided, run_at, due, where)
        skipped = decided & pd.notna(skip)
        sending = decided & ~skipped
        unreachable = sending & (self.blocked != "")
        self.end(unreachable, run_at, self.blocked[unreachable])
        sending &= ~unreachable
        send_at = first_run_in_window(run, self.zone, self.spec.send_window, timezone).to_numpy()
        self.exit_on_order(np.where(sending, send_at, run_at), until)
        sending &= self.going
        waits = sending & ~(send_at < until)
        self.going &= ~waits
        sending &= ~waits
        at = np.where(sending, send_at, run_at)
        done = skipped | sending
        self.rows.append(
            pd.DataFrame(
                {
                    "entry": self.frame["entry"].to_numpy()[done],
                    "occurrence": self.frame["occurrence"].to_numpy()[done],
                    "customer_id": self.frame["customer_id"].to_numpy()[done],
                    "step": self.spec.steps[index].name,
                    "status": np.where(sending[done], "sent", "skipped"),
                    "reason": skip[done],
                    "at": at[done],
                }
            )
        )
        self.step[done] = index + 1
        self.step_at[done] = at[done]
        if index == len(self.spec.steps) - 1:
            self.end(done, at, "completed")

    def past(self) -> JourneyPast:
        frame = self.frame.assign(
            step=self.step, step_at=self.step_at, exited_at=self.exited, exit_reason=self.reason
        )
        steps = (
            pd.concat(self.rows, ignore_index=True)
            if self.rows
            else pd.DataFrame(columns=list(STEP_COLUMNS))
        )
        steps["at"] = steps["at"].astype("datetime64[us]")
        return JourneyPast(frame, steps)


def simulate_steps(
    spec: JourneySpec,
    entries: pd.DataFrame,
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    until: pd.Timestamp,
    timezone: str,
    where: WhereTest,
) -> JourneyPast:
    """Decide every step of ``entries`` (entry, occurrence, customer_id, entered_at,
    holdout) before ``until``; ``orders`` (customer_id, placed_at) are every order known,
    ``customers`` has customer_id, timezone, reason (why no message reaches them, or "")
    and any ``at`` attribute."""
    walk = _Walk(spec, entries, orders, customers.set_index("customer_id"))
    for index in range(len(spec.steps)):
        walk.decide(index, until, timezone, where)
    return walk.past()
