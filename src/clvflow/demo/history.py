"""The demo shop's simulated past: its campaigns and journeys as they would have run over
the weeks before the demo's real runs, with holdouts, and the customers' answers at the
true effects of :mod:`clvflow.demo.effects`.

Each campaign's runs come from :mod:`clvflow.demo.past_campaigns`, each journey's entries
and steps from :mod:`clvflow.demo.past_journeys`, the extra orders from
:mod:`clvflow.demo.responses`. The campaigns are drawn one after the other (``ORDER``),
each seeing the extra orders of those before it; the journeys' steps are then decided once
more with every extra order known (an order ends a win-back entry). Campaigns run every
``resend`` period at their cron's hour (``vip-thanks`` every 91 days, ``points-expiry``
daily), journeys hourly; customers without marketing consent or a valid address are
skipped with that reason; the frequency cap is not simulated.

The result is the rows a ledger would hold (messages, skips, journey entries, promo codes,
runs; times naive shop-local here) and the extra orders for the shop's data; nothing is
written here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from clvflow.campaigns.catalog import load_campaigns
from clvflow.campaigns.holdouts import resolved_holdout
from clvflow.demo.effects import TRUE_EFFECTS, TrueEffect
from clvflow.demo.frames import ShopFrames
from clvflow.demo.past_campaigns import campaign_past
from clvflow.demo.past_journeys import (
    journey_entries,
    journey_found,
    journey_past,
    journey_rows,
    journey_units,
    redeem,
)
from clvflow.demo.past_rows import (
    CODE_COLUMNS,
    ENTRY_COLUMNS,
    MESSAGE_COLUMNS,
    SKIP_COLUMNS,
    Period,
)
from clvflow.demo.past_steps import JourneyPast
from clvflow.demo.responses import UNIT_COLUMNS, draw_responses, response_orders
from clvflow.journeys.catalog import load_journeys
from clvflow.project.layout import Project

# the order the history is drawn in (each sees the extra orders of those before it)
ORDER = ("vip-thanks", "points-expiry", "post-purchase", "win-back-series", "wedding")


@dataclass
class History:
    """What the simulated past left: ledger rows (shop-local times) and extra orders."""

    messages: list[pd.DataFrame] = field(default_factory=list)
    entries: list[pd.DataFrame] = field(default_factory=list)
    skips: list[pd.DataFrame] = field(default_factory=list)
    codes: list[pd.DataFrame] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    items: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: dict[str, dict[str, object]] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        columns = {
            "messages": MESSAGE_COLUMNS,
            "entries": ENTRY_COLUMNS,
            "skips": SKIP_COLUMNS,
            "codes": CODE_COLUMNS,
        }[name]
        parts = [p for p in getattr(self, name) if not p.empty]
        if not parts:
            return pd.DataFrame(columns=list(columns))
        joined: pd.DataFrame = pd.concat(parts, ignore_index=True)[list(columns)]
        return joined


@dataclass
class _State:
    """What the drawing carries from one campaign to the next."""

    rng: np.random.Generator
    orders: pd.DataFrame  # every order so far: the shop's and the responses drawn
    responses: list[pd.DataFrame] = field(default_factory=list)  # unit, customer_id, placed_at


def _runs(history: History) -> pd.DataFrame:
    """One finished run per simulated run id, with a summary of what it recorded."""
    messages, entries, skips = (history.table(n) for n in ("messages", "entries", "skips"))
    acts = pd.concat(
        [
            messages[["run_id", "campaign", "status"]].assign(
                at=messages["planned_at"], occurrence=messages["occurrence"]
            ),
            entries[["run_id"]].assign(
                campaign=entries["journey"], status="entered", at=entries["entered_at"],
                occurrence="",
            ),
            skips[["run_id", "campaign"]].assign(
                status="skipped", at=skips["at"], occurrence=skips["occurrence"]
            ),
        ],
        ignore_index=True,
    )  # fmt: skip
    journeys = set(entries["journey"])
    grouped = acts.groupby("run_id", sort=True)
    first = grouped.agg(
        campaign=("campaign", "first"), at=("at", "min"), occurrence=("occurrence", "first")
    )
    counts = pd.crosstab(acts["run_id"], acts["status"]).reindex(first.index, fill_value=0)
    as_of = first["at"].dt.floor("h")
    summaries = [
        json.dumps(
            {
                "simulated": True,
                "as_of": moment.isoformat(),
                **{k: int(v) for k, v in row.items() if v},
            }
        )
        for moment, row in zip(as_of, counts.to_dict(orient="records"), strict=True)
    ]
    return pd.DataFrame(
        {
            "run_id": first.index,
            "campaign": first["campaign"].to_numpy(),
            "occurrence": np.where(
                first["campaign"].isin(journeys), "journey", first["occurrence"].astype(str)
            ),
            "as_of": as_of.to_numpy(),
            "summary": summaries,
        }
    )


def _effect_summary(
    effect: TrueEffect, units: pd.DataFrame, responses: pd.DataFrame, percent: float
) -> dict[str, object]:
    treated = int(units["treated"].sum())
    return {
        "uplift_pp": round(100 * effect.uplift, 3),
        "holdout_percent": percent,
        "window_days": round(float((units["end"] - units["start"]).dt.days.mean()), 2)
        if len(units)
        else 0,
        "treated": treated,
        "holdout": len(units) - treated,
        "responses": len(responses),
    }


def simulate_history(project: Project, frames: ShopFrames, period: Period, seed: int) -> History:
    """The simulated past of every demo campaign and journey in the project's prefect.yaml
    (see the module's docstring)."""
    campaigns = load_campaigns(project.prefect_file)
    journeys = load_journeys(project.prefect_file)
    background = frames.orders
    state = _State(np.random.default_rng([seed, 20_260_101]), background.copy())
    history = History()
    pasts: dict[str, Callable[[pd.DataFrame], JourneyPast]] = {}
    for name in ORDER:
        effect = TRUE_EFFECTS[name]
        if name in campaigns:
            percent = resolved_holdout(project, campaigns[name].spec)
            messages, skips, units = campaign_past(
                project, campaigns[name], frames, period, percent
            )
            history.messages.append(messages)
            history.skips.append(skips)
        elif name in journeys:
            journey = journeys[name]
            percent = resolved_holdout(project, journey.spec)
            found = journey_found(name, journey, frames, period, background)
            entries = journey_entries(journey, found, percent)

            pasts[name] = partial(journey_past, project, journey, entries, frames, period)
            units = journey_units(journey, pasts[name](state.orders), effect)
        else:
            continue
        drawn = draw_responses(
            state.rng, units[list(UNIT_COLUMNS)], state.orders, effect.uplift, period.data_end
        )
        state.responses.append(drawn)
        state.orders = pd.concat(
            [state.orders, drawn[["customer_id", "placed_at"]].assign(order_id="", total=0)],
            ignore_index=True,
        )
        history.effects[name] = _effect_summary(effect, units, drawn, percent)
    responses = (
        pd.concat(state.responses, ignore_index=True)
        if state.responses
        else pd.DataFrame(columns=["unit", "customer_id", "placed_at"])
    )
    history.orders, history.items = response_orders(
        state.rng, responses, background, frames.items, frames.currency
    )
    every_order = pd.concat([background, history.orders], ignore_index=True)
    for name, past_of in pasts.items():
        entries, messages, codes = journey_rows(
            project, journeys[name], past_of(every_order), frames, state.rng
        )
        history.entries.append(entries)
        history.messages.append(messages)
        history.codes.append(redeem(codes, history.orders))
    history.runs = _runs(history)
    return history
