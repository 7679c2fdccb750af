"""A journey's parameters: the pydantic model that a prefect.yaml deployment with ``steps``
fills in, and that the Prefect UI shows as a typed form for a custom run.

A journey is a series of steps that follows each customer from the moment they enter:
each step waits (``wait``) after the step before, or is anchored on a date attribute
(``at``); ``where`` and ``unless`` decide per entry whether it sends or is skipped.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from dateutil.relativedelta import relativedelta
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from clvflow.project.campaign_spec import (
    CampaignSpec,
    Every,
    PromoSpec,
    SendWindow,
    Variant,
    check_variants,
)

ORDER_PLACED = "shop.order.placed"
_PERIOD = re.compile(r"^\s*([+-]?\d+)\s+(minute|hour|day|week|month|year)s?\s*$")
_UNITS = {
    "minute": "minutes",
    "hour": "hours",
    "day": "days",
    "week": "weeks",
    "month": "months",
    "year": "years",
}
_STEP_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"


def period_parts(text: str) -> tuple[int, str]:
    """``'-10 months'`` → ``(-10, 'month')``."""
    match = _PERIOD.match(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a period such as '14 days', '2 weeks', '-3 months' or '12 hours'"
        )
    return int(match.group(1)), match.group(2)


def parse_period(text: str) -> relativedelta:
    """``'14 days'``, ``'-10 months'``, ``'2 weeks'`` as a calendar shift."""
    count, unit = period_parts(text)
    return relativedelta(**{_UNITS[unit]: count})  # type: ignore[arg-type]


def _check_period(text: str) -> str:
    parse_period(text)
    return text


def _check_wait(text: str) -> str:
    if parse_period(text) != relativedelta() and text.strip().startswith("-"):
        raise ValueError(f"'{text}': a wait cannot be negative")
    return text


Period = Annotated[str, AfterValidator(_check_period)]
Wait = Annotated[str, AfterValidator(_check_wait)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(Strict):
    """Who enters: the members of a segment (checked at every run), or every order placed."""

    segment: str | None = Field(default=None, description="Segment name (a file in segments/).")
    event: Literal["shop.order.placed"] | None = Field(
        default=None, description="Enter on each order placed (one entry per order)."
    )
    within: Wait = Field(
        default="3 days",
        description="event: orders placed at most this long before a run still enter "
        "(a missed run catches up; older orders never do).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Entry:
        if (self.segment is None) == (self.event is None):
            raise ValueError("give either 'segment' or 'event' (not both)")
        return self


Reentry = Literal["once", "per_order"] | Every


class Exit(Strict):
    on_order: bool = Field(
        default=True, description="An order placed after entering ends the journey."
    )


class At(Strict):
    """Due from ``attribute + offset`` (a date or timestamp attribute of the customer)."""

    attribute: str
    offset: Period = "0 days"


class Unless(Strict):
    """The step is skipped when any of these holds for the entry."""

    promo_redeemed: bool = Field(
        default=False, description="A code this entry was given (at any step) was used."
    )
    ordered: bool = Field(default=False, description="An order was placed after entering.")
    clicked: str | None = Field(default=None, description="A link in this step was clicked.")
    opened: str | None = Field(default=None, description="This step's email was opened.")

    @property
    def any(self) -> bool:
        return self.promo_redeemed or self.ordered or bool(self.clicked or self.opened)


class Step(Strict):
    name: str = Field(pattern=_STEP_NAME, description="Recorded in the ledger and headers.")
    template: str | None = Field(default=None, description="Template name; or variants.")
    variants: list[Variant] = Field(default_factory=list)
    wait: Wait | None = Field(
        default=None,
        description="After the previous step was sent or skipped (the first: after entering).",
    )
    at: At | None = None
    until: Wait | None = Field(
        default=None,
        description="How long after it is due the step may still go; later it is skipped.",
    )
    where: dict[str, object] | None = Field(
        default=None, description="A segment condition the customer must meet as of the run."
    )
    unless: Unless | None = None
    promo: PromoSpec | None = Field(
        default=None, description="A new code; without it the step shows the entry's code."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Step:
        if self.wait is not None and self.at is not None:
            raise ValueError("give either 'wait' or 'at', not both")
        if self.template is None and not self.variants:
            raise ValueError("give a 'template' (or A/B 'variants')")
        if self.template is not None and self.variants:
            raise ValueError("give either 'template' or 'variants', not both")
        check_variants(self.variants)
        return self

    @property
    def templates(self) -> list[str]:
        if self.variants:
            return list(dict.fromkeys(v.template for v in self.variants))
        return [str(self.template)]

    @property
    def wait_period(self) -> relativedelta:
        return parse_period(self.wait) if self.wait else relativedelta()


class JourneySpec(Strict):
    """A multi-step series (see the module's docstring)."""

    entry: Entry
    reentry: Reentry = Field(
        default="once", description="'once', 'per_order' or {every: '180 days'}."
    )
    exit: Exit = Field(default_factory=Exit)
    holdout_percent: float | None = Field(
        default=None,
        ge=0,
        le=50,
        description="Share of entries that get no step at all; unset: "
        "measurement.holdout_percent of clvflow.yaml; 0: no holdout. Never for a journey "
        "with a transactional step.",
    )
    send_window: SendWindow | None = None
    attribution_days: int = Field(
        default=7, ge=1, le=90, description="An order this many days after a step counts for it."
    )
    batch_size: int | None = Field(default=None, ge=1, le=100_000)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> JourneySpec:
        names = [s.name for s in self.steps]
        for index, step in enumerate(self.steps):
            if names.count(step.name) > 1:
                raise ValueError(f"two steps are named '{step.name}': step names must differ")
            for kind in ("clicked", "opened"):
                ref = getattr(step.unless, kind) if step.unless else None
                if ref is not None and ref not in names[:index]:
                    raise ValueError(
                        f"steps.{index}.unless.{kind}: '{ref}' is not an earlier step "
                        f"(earlier steps: {', '.join(names[:index]) or 'none'})"
                    )
        if self.entry.event is not None and self.reentry != "per_order":
            raise ValueError("an event entry enters once per order: set reentry: per_order")
        return self

    @property
    def templates(self) -> list[str]:
        return list(dict.fromkeys(t for s in self.steps for t in s.templates))

    def step_campaign(self, index: int) -> CampaignSpec:
        """Step ``index`` as the campaign spec the pipeline sends with."""
        step = self.steps[index]
        return CampaignSpec(
            segment=self.entry.segment or ORDER_PLACED,
            template=step.template or step.variants[0].template,
            variants=step.variants,
            send_window=self.send_window,
            attribution_days=self.attribution_days,
            holdout_percent=0,  # the journey holds out whole entries, never a step
            promo=step.promo,
            batch_size=self.batch_size,
        )

    def holds_promo(self, index: int) -> PromoSpec | None:
        """The promo spec of the code an entry holds when step ``index`` goes: its own,
        else the latest earlier step's."""
        for step in reversed(self.steps[: index + 1]):
            if step.promo is not None:
                return step.promo
        return None
