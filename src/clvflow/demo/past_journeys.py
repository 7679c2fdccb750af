"""A journey's simulated past: who entered when, who was held out by the rule real runs
use (per order for a per-order journey), each entry's steps
(:mod:`clvflow.demo.past_steps`), the rows the ledger keeps (entries, step messages,
promo codes, those redeemed), and the units its effect is measured on (its entries)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.demo import audiences
from clvflow.demo.effects import TrueEffect
from clvflow.demo.frames import ShopFrames
from clvflow.demo.past_rows import CODE_COLUMNS, SENT_AFTER, Period, locales, run_id
from clvflow.demo.past_steps import JourneyPast, simulate_steps
from clvflow.demo.where import where_test
from clvflow.journeys.catalog import Journey
from clvflow.measurement.journeys import uplift_window
from clvflow.personalization.promo import ALPHABET
from clvflow.planning.holdout import held_out
from clvflow.planning.variants import assign_variants
from clvflow.project.layout import Project


def journey_found(
    name: str, journey: Journey, frames: ShopFrames, period: Period, orders: pd.DataFrame
) -> pd.DataFrame:
    """(customer_id, at[, order_id]): who entered when."""
    if journey.spec.entry.event is not None:
        return audiences.order_entries(orders, period.start, period.until)
    if name == "wedding":
        return audiences.wedding_entries(frames.customers, period.start, period.until)
    return audiences.lapsed_entries(orders, frames.customers, period.start, period.until)


def journey_entries(journey: Journey, found: pd.DataFrame, percent: float) -> pd.DataFrame:
    spec = journey.spec
    if spec.reentry == "per_order":
        occurrence = found["order_id"].astype(str)
    elif spec.reentry == "once":
        occurrence = pd.Series("once", index=found.index)
    else:
        occurrence = found["at"].dt.date.map(lambda d: d.isoformat())
    per_order = occurrence.tolist() if spec.reentry == "per_order" else None
    held = held_out(journey.name, found["customer_id"].tolist(), percent, per_order)
    return pd.DataFrame(
        {
            "entry": np.arange(len(found)),
            "occurrence": occurrence.to_numpy(),
            "customer_id": found["customer_id"].to_numpy(),
            "entered_at": found["at"].astype("datetime64[us]").to_numpy(),
            "holdout": held,
        }
    )


def journey_past(
    project: Project,
    journey: Journey,
    entries: pd.DataFrame,
    frames: ShopFrames,
    period: Period,
    orders: pd.DataFrame,
) -> JourneyPast:
    customers = frames.customers
    test = where_test(journey.spec, orders, frames.items, customers["customer_id"])
    return simulate_steps(
        journey.spec,
        entries,
        orders,
        customers,
        until=period.until,
        timezone=project.config.shop.timezone,
        where=test,
    )


def journey_units(journey: Journey, past: JourneyPast, effect: TrueEffect) -> pd.DataFrame:
    entries = past.entries
    window, _ = uplift_window(journey.spec)
    step = effect.responds_to or journey.spec.steps[0].name
    return pd.DataFrame(
        {
            "unit": entries["entry"],
            "customer_id": entries["customer_id"],
            "start": entries["entered_at"],
            "end": entries["entered_at"] + pd.Timedelta(window),
            "treated": ~entries["holdout"].astype(bool),
            "responsive_at": past.sent_at(step).to_numpy(),
        }
    )


def journey_rows(
    project: Project,
    journey: Journey,
    past: JourneyPast,
    frames: ShopFrames,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The journey's entries, step messages and promo codes as the ledger holds them."""
    name, spec = journey.name, journey.spec
    info = frames.customers.set_index("customer_id")
    entries = past.entries.copy()
    entries["journey"] = name
    entries["holdout"] = entries["holdout"].astype("int64")
    entries["run_id"] = run_id(name, entries["entered_at"])
    steps = past.steps
    sent = steps["status"] == "sent"
    template = pd.Series(None, index=steps.index, dtype=object)
    variant = pd.Series(None, index=steps.index, dtype=object)
    for step in spec.steps:  # a handful of steps, each one set of rows
        rows = steps.index[(steps["step"] == step.name) & sent]
        chosen = assign_variants(name, steps.loc[rows, "customer_id"].tolist(), step.variants)
        by_variant = {v.name: v.template for v in step.variants}
        template[rows] = [by_variant.get(c or "", step.template) for c in chosen]
        variant[rows] = chosen
    messages = pd.DataFrame(
        {
            "campaign": name,
            "occurrence": steps["occurrence"].astype(str) + "/" + steps["step"],
            "customer_id": steps["customer_id"],
            "email": steps["customer_id"].map(info["email"]).where(sent, ""),
            "status": steps["status"],
            "reason": steps["reason"],
            "template": template,
            "variant": variant,
            "locale": locales(project, steps["customer_id"], info).where(sent, None),
            "run_id": run_id(name, steps["at"]),
            "planned_at": steps["at"] + pd.Timedelta(seconds=1),
            "finished_at": (steps["at"] + SENT_AFTER).where(
                sent, steps["at"] + pd.Timedelta(seconds=1)
            ),
        }
    )
    codes = _codes(project, journey, steps[sent], rng)
    return entries, messages, codes


def _codes(
    project: Project, journey: Journey, sent: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """The promo codes the sent steps with a ``promo`` issued (one per message)."""
    frames = []
    for step in journey.spec.steps:
        if step.promo is None:
            continue
        rows = sent[sent["step"] == step.name]
        letters = np.asarray(list(ALPHABET))[rng.integers(0, len(ALPHABET), (len(rows), 8))]
        text = ["".join(chars) for chars in letters]
        frames.append(
            pd.DataFrame(
                {
                    "code": [f"{step.promo.prefix}-{t[:4]}-{t[4:]}" for t in text],
                    "campaign": journey.name,
                    "occurrence": rows["occurrence"].astype(str) + "/" + step.name,
                    "customer_id": rows["customer_id"],
                    "discount_percent": step.promo.discount_percent,
                    "min_order": step.promo.min_order,
                    "currency": project.config.shop.currency,
                    "expires_at": rows["at"].dt.normalize()
                    + pd.Timedelta(days=step.promo.valid_days, hours=23, minutes=59, seconds=59),
                    "created_at": rows["at"] + SENT_AFTER,
                    "redeemed_at": pd.Series(pd.NaT, index=rows.index, dtype="datetime64[us]"),
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CODE_COLUMNS))
    )


def redeem(codes: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Each response order uses the customer's latest valid code it meets the minimum of."""
    if codes.empty or orders.empty:
        return codes
    codes = codes.reset_index(drop=True)
    pairs = orders[["order_id", "customer_id", "placed_at", "total"]].merge(
        codes.reset_index()[["index", "customer_id", "created_at", "expires_at", "min_order"]],
        on="customer_id",
    )
    usable = pairs[
        (pairs["created_at"] < pairs["placed_at"])
        & (pairs["expires_at"] >= pairs["placed_at"])
        & (pairs["total"] >= pairs["min_order"] * 100)
    ]
    latest = usable.sort_values("created_at").drop_duplicates("order_id", keep="last")
    latest = latest.drop_duplicates("index", keep="first")
    codes.loc[latest["index"].to_numpy(), "redeemed_at"] = latest["placed_at"].to_numpy()
    return codes
