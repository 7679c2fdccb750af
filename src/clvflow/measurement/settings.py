"""The ``measurement:`` section of clvflow.yaml, and the per-campaign settings it defaults.

```yaml
measurement:
  holdout_percent: 10                 # default for every campaign and journey (0-50)
  attribution_window: 5 days          # default for every campaign
  min_group_size: 100                 # fewer recipients in a group: "too small to conclude"
  prediction_horizon: 365 days        # predicted_orders and predicted_clv look this far ahead
  acquisition:                        # optional: LTV:CAC per acquisition channel
    channel_column: acquisition_channel
    cost_per_customer: {paid_social: 18.5, search: 22}
```

The holdout: a campaign's or journey's own ``holdout_percent`` (its spec in prefect.yaml)
wins over ``measurement.holdout_percent`` when it is set, and an explicit 0 means no
holdout. A campaign or journey that sends a transactional template (front matter
``kind: transactional``) is never held out, whatever either says.

The attribution window: a campaign's own ``attribution_days``, when set, wins over
``attribution_window``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+)\s+(hour|day|week)s?\s*$")
_UNIT_HOURS = {"hour": 1, "day": 24, "week": 24 * 7}
DEFAULT_WINDOW = "5 days"


def duration(text: str) -> dt.timedelta:
    """``"5 days"`` → 5 days; also hours and weeks (``"48 hours"``, ``"1 week"``)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a duration such as '5 days', '48 hours' or '1 week'")
    hours = int(match.group(1)) * _UNIT_HOURS[match.group(2)]
    if hours <= 0:
        raise ValueError(f"'{text}' is empty: an attribution window must be longer than zero")
    return dt.timedelta(hours=hours)


def _check_duration(text: str) -> str:
    duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcquisitionCost(_Strict):
    channel_column: str = Field(
        default="acquisition_channel",
        description="The customers column naming each customer's acquisition channel.",
    )
    cost_per_customer: dict[str, Annotated[float, Field(gt=0)]] = Field(
        min_length=1, description="Channel → cost of acquiring one customer (shop currency)."
    )


class MeasurementConfig(_Strict):
    holdout_percent: float = Field(
        default=0,
        ge=0,
        le=50,
        description="Share of each campaign's (and journey's) eligible customers withheld to "
        "measure its uplift, unless its spec sets its own; transactional mail never.",
    )
    attribution_window: Duration = Field(
        default=DEFAULT_WINDOW,
        description="An order placed this long after a send (or a holdout row) counts for it.",
    )
    min_group_size: int = Field(
        default=100,
        ge=2,
        description="Below this many recipients in a group, the report will not conclude.",
    )
    prediction_horizon: Duration = Field(
        default="365 days",
        description="How far ahead predicted_orders and predicted_clv look.",
    )
    acquisition: AcquisitionCost | None = None

    def window_for(self, spec: object | None = None) -> dt.timedelta:
        """A campaign's window: ``attribution_days`` when its spec sets it, else the default."""
        fields_set: set[str] = getattr(spec, "model_fields_set", set())
        days = getattr(spec, "attribution_days", None)
        if "attribution_days" in fields_set and isinstance(days, int):
            return dt.timedelta(days=days)
        return duration(self.attribution_window)

    def holdout_for(self, spec: object, *, transactional: bool) -> float:
        """A campaign's (or journey's) holdout percent: 0 when it sends transactional
        mail, else ``holdout_percent`` of its spec when set, else the default."""
        if transactional:
            return 0.0
        own = getattr(spec, "holdout_percent", None)
        return float(self.holdout_percent if own is None else own)
