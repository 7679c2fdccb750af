"""The shape of the demo's simulated past: its period, the columns of its ledger rows, the
simulated runs' ids, when a run's messages are recorded, the locale a message goes in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from clvflow.demo.effects import HISTORY_WEEKS
from clvflow.project.layout import Project

RUN_PREFIX = "history-"  # every simulated run's id starts so
SENT_AFTER = pd.Timedelta(seconds=30)  # a run's messages are recorded this long after it
MESSAGE_COLUMNS = (
    "campaign", "occurrence", "customer_id", "email", "status", "reason", "template",
    "variant", "locale", "run_id", "planned_at", "finished_at",
)  # fmt: skip
ENTRY_COLUMNS = (
    "journey", "occurrence", "customer_id", "entered_at", "holdout", "step", "step_at",
    "exited_at", "exit_reason", "run_id",
)  # fmt: skip
SKIP_COLUMNS = ("run_id", "campaign", "occurrence", "customer_id", "reason", "at")
CODE_COLUMNS = (
    "code", "campaign", "occurrence", "customer_id", "discount_percent", "min_order",
    "currency", "expires_at", "created_at", "redeemed_at",
)  # fmt: skip


def run_id(name: str, at: pd.Series) -> pd.Series:
    """The id of the simulated run of ``name`` that acted at each time (one per hour)."""
    ids: pd.Series = RUN_PREFIX + name + "-" + at.dt.ceil("h").dt.strftime("%Y%m%d%H%M")
    return ids


def locales(project: Project, customers: pd.Series, info: pd.DataFrame) -> pd.Series:
    """Each customer's locale when the shop has it, else the shop's default (the demo's
    templates exist in every locale of the shop)."""
    shop = project.config.shop
    locale = customers.map(info["locale"]).fillna(shop.default_locale)
    return locale.where(locale.isin(shop.locales), shop.default_locale)


@dataclass(frozen=True)
class Period:
    """The simulated past: from ``start`` (its first runs) to ``until`` (excluded; the real
    runs carry on from there); no order after ``data_end`` (the shop's data ends there)."""

    start: pd.Timestamp
    until: pd.Timestamp
    data_end: pd.Timestamp

    @classmethod
    def before(cls, until: dt.datetime, reference: dt.date) -> Period:
        """From ``HISTORY_WEEKS`` before the reference day to ``until``."""
        start = pd.Timestamp(reference) - pd.Timedelta(weeks=HISTORY_WEEKS)
        return cls(start, pd.Timestamp(until), pd.Timestamp(reference))
