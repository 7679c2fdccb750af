"""A campaign's parameters: the pydantic model that prefect.yaml deployments fill in and
that the Prefect UI shows as a typed form for a custom run."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_EVERY = re.compile(r"^\s*(\d+)\s+(day|week)s?\s*$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"


def _check_every(text: str) -> str:
    if not _EVERY.match(text):
        raise ValueError(f"'{text}' is not a period such as '30 days' or '4 weeks'")
    return text


class Every(BaseModel):
    """Send again to the same customer once this period has passed since the last send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Annotated[str, AfterValidator(_check_every)]

    @property
    def days(self) -> int:
        match = _EVERY.match(self.every)
        assert match is not None
        return int(match.group(1)) * (7 if match.group(2) == "week" else 1)


ResendPolicy = Literal["once", "per_order"] | Every


class PromoSpec(BaseModel):
    """A unique, single-use promo code per recipient."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    discount_percent: float = Field(gt=0, le=100)
    min_order: float = Field(default=0, ge=0, description="Minimum order total, shop currency.")
    valid_days: int = Field(default=14, ge=1, le=365)
    prefix: str = Field(default="CLV", pattern=r"^[A-Z0-9]{2,10}$")


class Variant(BaseModel):
    """One arm of an A/B test: its own template, and its share of the recipients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Recorded in the ledger (messages.variant).")
    template: str = Field(description="Template name (templates/<name>.html.j2).")
    weight: float = Field(default=1, gt=0, description="Relative share of the recipients.")


def check_variants(variants: list[Variant]) -> None:
    """None, or two or more variants with distinct names."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must differ: {names}")
    if len(variants) == 1:
        raise ValueError("one variant is no A/B test: give two or more, or none")


def _parse_clock(text: str) -> dt.time:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a time of day such as '09:00' or '20:30'")
    return dt.time(int(match.group(1)), int(match.group(2)))


def _check_clock(text: str) -> str:
    _parse_clock(text)
    return text


Clock = Annotated[str, AfterValidator(_check_clock)]


class SendWindow(BaseModel):
    """Send only between ``start`` and ``end`` in the customer's own time zone (the
    ``timezone`` column, else the shop's). A message outside the window waits for a later
    run; it is not dropped. ``end`` before ``start`` spans midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Clock = Field(description="Local time of day, 'HH:MM', inclusive.")
    end: Clock = Field(description="Local time of day, 'HH:MM', exclusive.")

    @model_validator(mode="after")
    def _not_empty(self) -> SendWindow:
        if self.start_time == self.end_time:
            raise ValueError("start and end are equal: the window would never open")
        return self

    @property
    def start_time(self) -> dt.time:
        return _parse_clock(self.start)

    @property
    def end_time(self) -> dt.time:
        return _parse_clock(self.end)

    def contains(self, local: dt.time) -> bool:
        start, end = self.start_time, self.end_time
        if start < end:
            return start <= local < end
        return local >= start or local < end


class CampaignSpec(BaseModel):
    """What a campaign sends, to whom, how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: str = Field(description="Segment name (a file in segments/).")
    template: str = Field(
        description="Template name (templates/<name>.html.j2); used unless variants are set."
    )
    resend: ResendPolicy = Field(
        default="once",
        description="'once', 'per_order', or {every: '30 days'}.",
    )
    holdout_percent: float | None = Field(
        default=None,
        ge=0,
        le=50,
        description="Share of eligible customers withheld to measure uplift; unset: "
        "measurement.holdout_percent of clvflow.yaml; 0: no holdout. Never for "
        "transactional mail.",
    )
    variants: list[Variant] = Field(
        default_factory=list,
        description="A/B test: each recipient gets one variant, by a stable hash of customer "
        "and campaign, in proportion to the weights. Empty: everyone gets 'template'.",
    )
    send_window: SendWindow | None = Field(
        default=None, description="Send only at these local hours of the customer."
    )
    attribution_days: int = Field(
        default=5,
        ge=1,
        le=90,
        description="An order placed this many days after the send counts for the campaign.",
    )
    promo: PromoSpec | None = None
    batch_size: int | None = Field(default=None, ge=1, le=100_000)
    workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Processes that render and send batches at once (they share the ledger).",
    )

    @model_validator(mode="after")
    def _distinct_variants(self) -> CampaignSpec:
        check_variants(self.variants)
        return self

    @property
    def templates(self) -> list[str]:
        """Every template the campaign may send (one per variant, or the one template)."""
        if self.variants:
            return list(dict.fromkeys(v.template for v in self.variants))
        return [self.template]

    def template_of(self, variant: str | None) -> str:
        for v in self.variants:
            if v.name == variant:
                return v.template
        return self.template

    def occurrence(self, as_of: dt.datetime) -> str:
        """The campaign occurrence of a run at ``as_of`` (per_order is decided per customer)."""
        if self.resend == "once":
            return "once"
        if self.resend == "per_order":
            return "per_order"
        return as_of.date().isoformat()
