"""A campaign's simulated past: who each run reached (:mod:`clvflow.demo.audiences`), who
was held out by the rule real runs use, the messages and skips it recorded, and the units
its effect is measured on (its messages)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.campaigns.catalog import Campaign
from clvflow.demo import audiences
from clvflow.demo.frames import ShopFrames
from clvflow.demo.past_rows import SENT_AFTER, Period, locales, run_id
from clvflow.planning.holdout import held_out
from clvflow.planning.variants import assign_variants
from clvflow.project.campaign_spec import Every
from clvflow.project.layout import Project


def _run_hour(campaign: Campaign, default: int = 10) -> pd.Timedelta:
    """The time of day of a campaign's cron (``0 11 1 */3 *`` → 11:00)."""
    for schedule in campaign.schedules:
        parts = str(schedule.get("cron", "")).split()
        if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit():
            return pd.Timedelta(hours=int(parts[1]), minutes=int(parts[0]))
    return pd.Timedelta(hours=default)


def _campaign_members(
    name: str, campaign: Campaign, frames: ShopFrames, period: Period
) -> pd.DataFrame:
    at = _run_hour(campaign)
    if name == "vip-thanks":
        days = campaign.spec.resend.days + 1 if isinstance(campaign.spec.resend, Every) else 91
        runs = audiences.runs_every(period.start, period.until, days, at)
        return audiences.vip_members(frames.orders, frames.customers, runs)
    return audiences.points_members(frames.customers, period.start, period.until, at)


def campaign_past(
    project: Project,
    campaign: Campaign,
    frames: ShopFrames,
    period: Period,
    percent: float,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The campaign's messages, skips and measured units (``UNIT_COLUMNS``)."""
    name, spec = campaign.name, campaign.spec
    members = _campaign_members(name, campaign, frames, period)
    info = frames.customers.set_index("customer_id")
    members["occurrence"] = members["at"].dt.date.map(lambda d: d.isoformat())
    members["run_id"] = run_id(name, members["at"])
    reason = members["customer_id"].map(info["reason"])
    skipped = members[reason != ""]
    skips = pd.DataFrame(
        {
            "run_id": skipped["run_id"],
            "campaign": name,
            "occurrence": skipped["occurrence"],
            "customer_id": skipped["customer_id"],
            "reason": reason[reason != ""],
            "at": skipped["at"],
        }
    )
    reached = members[reason == ""].reset_index(drop=True)
    held = held_out(name, reached["customer_id"].tolist(), percent)
    variants = assign_variants(name, reached["customer_id"].tolist(), spec.variants)
    planned = reached["at"] + pd.Timedelta(seconds=1)
    finished = (reached["at"] + SENT_AFTER).mask(pd.Series(held, index=reached.index))
    messages = pd.DataFrame(
        {
            "campaign": name,
            "occurrence": reached["occurrence"],
            "customer_id": reached["customer_id"],
            "email": reached["customer_id"].map(info["email"]),
            "status": np.where(held, "holdout", "sent"),
            "reason": None,
            "template": [spec.template_of(v) for v in variants],
            "variant": [None if h else v for h, v in zip(held, variants, strict=True)],
            "locale": locales(project, reached["customer_id"], info),
            "run_id": reached["run_id"],
            "planned_at": planned,
            "finished_at": finished,
        }
    )
    start = finished.where(~held, planned)
    window = pd.Timedelta(project.config.measurement.window_for(spec))
    units = pd.DataFrame(
        {
            "unit": np.arange(len(messages)),
            "customer_id": messages["customer_id"],
            "start": start,
            "end": start + window,
            "treated": ~held,
            "responsive_at": finished,
        }
    )
    return messages, skips, units
