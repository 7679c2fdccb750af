"""A campaign's parameters: the pydantic model that prefect.yaml deployments fill in and
that the Prefect UI shows as a typed form for a custom run."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_EVERY = re.compile(r"^\s*(\d+)\s+(day|week)s?\s*$")


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


class CampaignSpec(BaseModel):
    """What a campaign sends, to whom, how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segment: str = Field(description="Segment name (a file in segments/).")
    template: str = Field(description="Template name (templates/<name>.html.j2).")
    resend: ResendPolicy = Field(
        default="once",
        description="'once', 'per_order', or {every: '30 days'}.",
    )
    holdout_percent: float = Field(
        default=0,
        ge=0,
        le=50,
        description="Share of eligible customers withheld to measure uplift.",
    )
    promo: PromoSpec | None = None
    batch_size: int | None = Field(default=None, ge=1, le=100_000)

    def occurrence(self, as_of: dt.datetime) -> str:
        """The campaign occurrence of a run at ``as_of`` (per_order is decided per customer)."""
        if self.resend == "once":
            return "once"
        if self.resend == "per_order":
            return "per_order"
        return as_of.date().isoformat()
