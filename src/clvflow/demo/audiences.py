"""Who the demo shop's campaigns and journeys reached in the simulated past, and when: the
demo's segments (``segments/*.yaml``) read off the generated orders at past moments, in
pandas, one set of rows per run or checkpoint (never a loop over customers).

- ``top_spenders``: the top 5 % of customers by total spent with two orders or more;
- ``lapsed``: two orders or more, the last one more than 90 days ago, not a top spender;
  a customer enters at the first hourly run after the 90 days are over;
- ``points_expiry``: at least 100 points expiring within 30 days. The data holds each
  customer's current balance and expiry; points expire yearly, so the earlier expiries
  are that date minus whole years, and the daily run first meets a customer 30 days
  before one of them;
- every order placed enters ``post-purchase`` at once;
- ``wedding_party``: couples and bridesmaids with a wedding date, from the first run
  after they signed up.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

from clvflow.demo.timing import at_least, next_run

DAY = pd.Timedelta(days=1)
TOP_SPENDERS_PERCENT = 5
LAPSED_AFTER = pd.Timedelta(days=90)
POINTS_MIN = 100
POINTS_AHEAD = pd.Timedelta(days=30)


class Spending:
    """Orders count and total spent (cents) of every customer before any moment: the
    orders sorted by time once, each moment a prefix of them."""

    def __init__(self, orders: pd.DataFrame, customers: pd.Series) -> None:
        ordered = orders.sort_values("placed_at", kind="stable")
        self.customers = pd.Index(customers.astype(str))
        self.placed = ordered["placed_at"].to_numpy(dtype="datetime64[us]")
        codes = self.customers.get_indexer(pd.Index(ordered["customer_id"].astype(str)))
        known = codes >= 0
        self.placed, self.codes = self.placed[known], codes[known]
        self.totals = ordered["total"].to_numpy(dtype=np.float64)[known]

    def codes_of(self, customer_ids: pd.Series) -> npt.NDArray[np.intp]:
        """Each customer's position among ``customers`` (all must be there)."""
        codes = self.customers.get_indexer(pd.Index(customer_ids.astype(str)))
        if (codes < 0).any():
            raise ValueError("a customer the orders do not know")
        return codes

    def before(self, moment: pd.Timestamp) -> pd.DataFrame:
        """orders_count and total_spent per customer, of the orders placed at or before
        ``moment``."""
        k = int(np.searchsorted(self.placed, np.datetime64(moment, "us"), side="right"))
        size = len(self.customers)
        counts = np.bincount(self.codes[:k], minlength=size)
        spent = np.bincount(self.codes[:k], weights=self.totals[:k], minlength=size)
        return pd.DataFrame(
            {"orders_count": counts, "total_spent": spent},
            index=pd.Index(self.customers, name="customer_id"),
        )


def top_threshold(values: pd.Series, percent: float) -> float:
    """The k-th largest of ``values``, k = ceil(N × percent / 100): a value at least this
    is in the top ``percent`` (ties included), as segments' ``top_percent`` ranks."""
    k = max(1, math.ceil(len(values) * percent / 100))
    return float(np.sort(values.to_numpy())[::-1][k - 1])


def top_spenders(
    spending: Spending, moment: pd.Timestamp, present: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Per customer of ``spending``: among the ``present`` ones (signed up by then), in the
    top 5 % by total spent with two orders or more."""
    facts = spending.before(moment)
    spent = facts["total_spent"].to_numpy()
    cut = top_threshold(pd.Series(spent[present]), TOP_SPENDERS_PERCENT)
    return present & (spent >= cut) & (facts["orders_count"].to_numpy() >= 2)


def runs_every(
    start: pd.Timestamp, end: pd.Timestamp, days: int, at: pd.Timedelta
) -> list[pd.Timestamp]:
    """A run at time of day ``at`` on the first day and every ``days`` days after, before
    ``end``."""
    first = start.normalize() + at
    if first < start:
        first += DAY
    count = max(0, math.ceil((end - first) / pd.Timedelta(days=days)))
    return [first + pd.Timedelta(days=days * k) for k in range(count)]


def vip_members(
    orders: pd.DataFrame, customers: pd.DataFrame, runs: list[pd.Timestamp]
) -> pd.DataFrame:
    """(customer_id, at): the top spenders at each run, among those signed up by then."""
    spending = Spending(orders, customers["customer_id"])
    created = customers["created_at"].to_numpy()
    frames = []
    for at in runs:  # one run a quarter
        chosen = top_spenders(spending, at, created <= np.datetime64(at, "us"))
        frames.append(pd.DataFrame({"customer_id": spending.customers[chosen], "at": at}))
    return pd.concat(frames, ignore_index=True) if frames else _empty()


def points_members(
    customers: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, at: pd.Timedelta
) -> pd.DataFrame:
    """(customer_id, at): each customer with enough points at the daily run that first sees
    an expiry (a year's earlier ones too) within the next 30 days, in [start, end)."""
    holders = customers[
        (customers["loyalty_points"] >= POINTS_MIN) & customers["points_expire_at"].notna()
    ]
    frames = []
    for years in range(3):  # this year's expiry and the two before it
        expires = holders["points_expire_at"] - pd.DateOffset(years=years)
        seen = (expires - POINTS_AHEAD).dt.normalize() + at
        seen = seen.where(seen + POINTS_AHEAD >= expires, seen + DAY)
        frames.append(pd.DataFrame({"customer_id": holders["customer_id"], "at": seen}))
    found = pd.concat(frames, ignore_index=True)
    created = found["customer_id"].map(customers.set_index("customer_id")["created_at"])
    keep = (found["at"] >= start) & (found["at"] < end) & (created <= found["at"])
    return found[keep].sort_values(["at", "customer_id"]).reset_index(drop=True)


def lapsed_entries(
    orders: pd.DataFrame, customers: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """(customer_id, at): the first hourly run at which each customer is lapsed, from the
    journey's first run at ``start`` until ``end`` (one entry each: re-entry waits 180
    days, longer than the history); top spenders at the time are left out."""
    ordered = orders.sort_values(["customer_id", "placed_at"])
    rank = ordered.groupby("customer_id").cumcount() + 1
    following = ordered.groupby("customer_id")["placed_at"].shift(-1)
    lapses = ordered["placed_at"] + LAPSED_AFTER
    # a lapse: the 90 days after an order (the second or later) pass without another one
    became = (rank >= 2) & (following.isna() | (following > lapses))
    due = pd.DataFrame({"customer_id": ordered["customer_id"], "due": lapses})[became]
    due = due[(due["due"] < end) & ((following[became].isna()) | (following[became] > start))]
    due["at"] = next_run(at_least(due["due"], start))
    due = due[due["at"] < end].sort_values("at").drop_duplicates("customer_id")
    spending = Spending(orders, customers["customer_id"])
    created = customers["created_at"].to_numpy()
    frames = []
    for _, group in due.groupby(due["at"].dt.to_period("W")):  # weekly checkpoints
        moment = group["at"].min()
        present = created <= np.datetime64(moment, "us")
        vip = top_spenders(spending, moment, present)[spending.codes_of(group["customer_id"])]
        frames.append(group[~vip])
    kept = pd.concat(frames, ignore_index=True) if frames else _empty()
    return kept[["customer_id", "at"]].sort_values(["at", "customer_id"]).reset_index(drop=True)


def order_entries(orders: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """(customer_id, at, order_id): every order placed in [start, end); it enters at once."""
    placed = orders[(orders["placed_at"] >= start) & (orders["placed_at"] < end)]
    return pd.DataFrame(
        {
            "customer_id": placed["customer_id"],
            "at": placed["placed_at"],
            "order_id": placed["order_id"],
        }
    ).reset_index(drop=True)


def wedding_entries(
    customers: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """(customer_id, at): couples and bridesmaids with a wedding date, at the first run
    after they signed up (the journey's first run, for those already there)."""
    party = customers[
        customers["role"].isin(["couple", "bridesmaid"]) & customers["wedding_date"].notna()
    ]
    at = next_run(at_least(party["created_at"], start))
    found = pd.DataFrame({"customer_id": party["customer_id"], "at": at})
    return found[found["at"] < end].reset_index(drop=True)


def clv_top(spending: Spending, moment: pd.Timestamp, percent: float) -> npt.NDArray[np.bool_]:
    """Per customer of ``spending``: in the top ``percent`` by historical CLV (total spent,
    buyers only)."""
    facts = spending.before(moment)
    buyers = facts["orders_count"].to_numpy() > 0
    if not buyers.any():
        return buyers
    spent = facts["total_spent"].to_numpy()
    cut = top_threshold(pd.Series(spent[buyers]), percent)
    return buyers & (spent >= cut)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": pd.Series(dtype=object), "at": pd.Series(dtype="datetime64[us]")}
    )
