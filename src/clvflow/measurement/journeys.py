"""Journeys measured for the report: per step, what its messages did; per journey, its
effect against its holdout.

Per step (the part of a message's occurrence after the last ``/``):

- **recipients**: the step's messages with status ``sent`` planned in the report's period
  (one per entry reached: a customer who entered twice and got the step twice counts twice,
  as a campaign's recipients count its messages);
- **conversions, orders, revenue**: orders placed within the journey's ``attribution_days``
  after the step's send, by :func:`clvflow.measurement.attribution.attribute` over the
  journey's messages. All steps are one campaign to it, so an order in the windows of two
  steps of one entry counts once, for the later step (last touch within the journey);
- **skipped**: the step's ``skipped`` messages in the period, by reason (``where``,
  ``unless``, ``expired``, ``missing_date``).

The journey's uplift compares its entries in the period (``entered_at``), intention to
treat: every entry not in the holdout is *treated*, whether a step reached it or not (one
without consent or address is as likely to fall in the holdout), against the *holdout*
entries, which got no step. An entry converts with an order placed within the journey's
window after ``entered_at``; revenue is per entry. Both go through the same attribution
query (the entries as sends at ``entered_at``, keyed apart from the step messages), and
:func:`clvflow.measurement.stats.compare` gives the 95 % intervals.

The journey's window is meant to cover the whole series plus the attribution after the last
step. When every step is timed by ``wait`` (a step with neither ``wait`` nor ``at`` goes at
entry: a wait of zero), it is the sum of the waits plus ``attribution_days`` (a month
counts as 30 days, a year as 365); the actual sends can come somewhat later (runs are
hourly, a send window can hold a step to the next morning), which this ignores. When any
step is anchored on a date (``at``), when the last step goes depends on each customer's
date, so the window is a fixed 30 days plus ``attribution_days``. Orders after the report's
``as_of`` are unknown: an entry still inside its window counts what is known so far, the
same for both groups, as they enter together.

Per journey, the ledger is read in two queries (its entries in the period, its skipped step
messages by step and reason) and the shop's orders in one DuckDB query (steps and entries
together); the sent messages come from the report's one read of the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
from dateutil.relativedelta import relativedelta
from sqlalchemy import String, case, func, literal, select, type_coerce

from clvflow.data.sources import ShopData
from clvflow.journeys.catalog import Journey
from clvflow.ledger.schema import journey_entries, messages
from clvflow.ledger.store import Ledger
from clvflow.measurement.attribution import attribute, rollup
from clvflow.measurement.sends import HOLDOUT, SEND_COLUMNS, TREATED
from clvflow.measurement.stats import Comparison, Group, compare
from clvflow.project.journey_spec import JourneySpec

FIXED_SPAN = dt.timedelta(days=30)  # the series' span when a step is anchored on a date
ENTRIES = "<entries>"  # the attribution key of the entries (never a journey's name)
OTHER_STEP = "(other)"  # a step message whose step the journey no longer has


@dataclass(frozen=True)
class StepResult:
    step: str
    recipients: int
    conversions: int
    orders: int
    revenue: float
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.conversions / self.recipients if self.recipients else None


@dataclass(frozen=True)
class JourneyResult:
    journey: str
    attribution_days: int
    window: dt.timedelta  # an entry converts with an order within this after entering
    from_waits: bool  # the window is the steps' waits + attribution (else fixed 30 days +)
    holdout_percent: float
    steps: list[StepResult]
    treated: Group  # entries not held out
    holdout: Group  # held-out entries
    vs_holdout: Comparison | None  # None without holdout entries (or treated ones)
    # the step messages' attribution cells (see measurement.attribution.attribute)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)


def _length(period: relativedelta) -> dt.timedelta:
    """A calendar period as a fixed length: a month is 30 days, a year 365."""
    days = 365 * period.years + 30 * period.months + period.days
    return dt.timedelta(days=days, hours=period.hours, minutes=period.minutes)


def uplift_window(spec: JourneySpec) -> tuple[dt.timedelta, bool]:
    """The journey's window for its uplift and whether it comes from the steps' waits
    (see the module's docstring)."""
    attribution = dt.timedelta(days=spec.attribution_days)
    if any(step.at is not None for step in spec.steps):
        return FIXED_SPAN + attribution, False
    span = sum((_length(step.wait_period) for step in spec.steps), dt.timedelta())
    return span + attribution, True


def read_entries(
    ledger: Ledger, journey: str, since_utc: dt.datetime, until_utc: dt.datetime
) -> pd.DataFrame:
    """The journey's entries entered in ``[since_utc, until_utc)``: id, occurrence,
    customer_id, entered_at (naive UTC), holdout (0/1)."""
    stmt = select(
        journey_entries.c.id,
        journey_entries.c.occurrence,
        journey_entries.c.customer_id,
        type_coerce(journey_entries.c.entered_at, String),  # pandas parses the column at once
        journey_entries.c.holdout,
    ).where(
        journey_entries.c.journey == journey,
        journey_entries.c.entered_at >= since_utc,
        journey_entries.c.entered_at < until_utc,
    )
    with ledger.engine.connect() as con:
        rows = [tuple(r) for r in con.execute(stmt.order_by(journey_entries.c.id))]
    columns = ["id", "occurrence", "customer_id", "entered_at", "holdout"]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame["entered_at"] = pd.to_datetime(frame["entered_at"], format="ISO8601").astype(
        "datetime64[us]"
    )
    return frame.astype({"id": "int64", "holdout": "int64"})


def read_skips(
    ledger: Ledger,
    journey: str,
    steps: Iterable[str],
    since_utc: dt.datetime,
    until_utc: dt.datetime,
) -> pd.DataFrame:
    """step, reason, messages: the journey's skipped step messages planned in the period."""
    step = case(
        *((messages.c.occurrence.endswith(f"/{name}"), literal(name)) for name in steps),
        else_=literal(OTHER_STEP),
    ).label("step")
    stmt = (
        select(step, func.coalesce(messages.c.reason, "").label("reason"), func.count())
        .where(
            messages.c.campaign == journey,
            messages.c.status == "skipped",
            messages.c.planned_at >= since_utc,
            messages.c.planned_at < until_utc,
        )
        .group_by(step, func.coalesce(messages.c.reason, ""))
    )
    with ledger.engine.connect() as con:
        rows = [(str(s), str(r), int(n)) for s, r, n in con.execute(stmt)]
    return pd.DataFrame(rows, columns=["step", "reason", "messages"])


def entry_sends(entries: pd.DataFrame) -> pd.DataFrame:
    """The entries as sends (read_sends' columns) at ``entered_at``, keyed ``ENTRIES``;
    negative ids keep them apart from the step messages' ids."""
    return pd.DataFrame(
        {
            "message_id": -entries["id"].astype("int64"),
            "campaign": ENTRIES,
            "occurrence": entries["occurrence"].astype(object),
            "customer_id": entries["customer_id"].astype(str),
            "group": entries["holdout"].map({1: HOLDOUT}).fillna(TREATED).astype(object),
            "variant": None,
            "locale": None,
            "sent_at": entries["entered_at"].astype("datetime64[us]"),
        },
        columns=[*SEND_COLUMNS, "locale", "sent_at"],
    )


def _group(cells: pd.DataFrame) -> Group:
    return Group(
        recipients=int(cells["recipients"].sum()),
        conversions=int(cells["conversions"].sum()),
        revenue=float(cells["revenue"].sum()),
        revenue_sq=float(cells["revenue_sq"].sum()),
    )


def _step_results(spec: JourneySpec, cells: pd.DataFrame, skips: pd.DataFrame) -> list[StepResult]:
    names = [s.name for s in spec.steps]
    steps = cells["occurrence"].astype(str).str.rsplit("/", n=1).str[-1]
    per_step = rollup(cells.assign(step=steps.where(steps.isin(names), OTHER_STEP)), ("step",))
    measured = {str(r["step"]): r for r in per_step.to_dict(orient="records")}
    skipped: dict[str, dict[str, int]] = {}
    for row in skips.to_dict(orient="records"):
        skipped.setdefault(str(row["step"]), {})[str(row["reason"])] = int(row["messages"])
    extra = [OTHER_STEP] if OTHER_STEP in measured or OTHER_STEP in skipped else []
    results = []
    for name in [*names, *extra]:
        row = measured.get(name, {})
        results.append(
            StepResult(
                step=name,
                recipients=int(row.get("recipients", 0)),
                conversions=int(row.get("conversions", 0)),
                orders=int(row.get("orders", 0)),
                revenue=float(row.get("revenue", 0.0)),
                skipped=dict(sorted(skipped.get(name, {}).items())),
            )
        )
    return results


def measure_journey(
    data: ShopData,
    journey: Journey,
    sends: pd.DataFrame,
    entries: pd.DataFrame,
    skips: pd.DataFrame,
    *,
    timezone: str,
    default_locale: str,
    until: dt.datetime | None,
    min_group_size: int,
    holdout_percent: float,
) -> JourneyResult:
    """One journey's steps and uplift (see the module's docstring). ``sends`` is
    :func:`clvflow.measurement.sends.read_sends`' frame (other campaigns' rows are
    ignored), ``entries`` :func:`read_entries`' and ``skips`` :func:`read_skips`';
    ``holdout_percent`` the share its runs hold out."""
    spec = journey.spec
    window, from_waits = uplift_window(spec)
    steps_sent = sends[(sends["campaign"] == journey.name) & (sends["group"] == TREATED)]
    parts = [frame for frame in (steps_sent, entry_sends(entries)) if not frame.empty]
    together = pd.concat(parts, ignore_index=True) if parts else steps_sent
    attribution = dt.timedelta(days=spec.attribution_days)
    cells = attribute(
        data, together, {journey.name: attribution, ENTRIES: window}, timezone=timezone,
        default_locale=default_locale, default_window=attribution, until=until,
    )  # fmt: skip
    entry_cells = cells[cells["campaign"] == ENTRIES]
    step_cells = cells[cells["campaign"] == journey.name]
    treated = _group(entry_cells[entry_cells["group"] == TREATED])
    holdout = _group(entry_cells[entry_cells["group"] == HOLDOUT])
    vs_holdout = (
        compare(treated, holdout, min_group_size=min_group_size)
        if treated.recipients and holdout.recipients
        else None
    )
    return JourneyResult(
        journey=journey.name,
        attribution_days=spec.attribution_days,
        window=window,
        from_waits=from_waits,
        holdout_percent=holdout_percent,
        steps=_step_results(spec, step_cells, skips),
        treated=treated,
        holdout=holdout,
        vs_holdout=vs_holdout,
        cells=step_cells.reset_index(drop=True),
    )
