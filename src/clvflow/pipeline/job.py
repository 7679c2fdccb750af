"""What one run of the pipeline sends, and as of when."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from clvflow.ledger.database import utcnow
from clvflow.planning.plan import ledger_time
from clvflow.project.campaign_spec import CampaignSpec


@dataclass(frozen=True)
class Job:
    """One run: the ledger's campaign key, what it sends (templates, variants, promo,
    resend policy, holdout, send window), its instant and its id; for a journey's step,
    the step."""

    name: str
    spec: CampaignSpec
    as_of: dt.datetime
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dry_run: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # added to every message
    step: str | None = None  # a journey's step: X-Clvflow-Step, and the occurrence's tail
    # a journey step without a promo of its own shows the code issued at this earlier step
    promo_step: str | None = None
    started: dt.datetime = field(default_factory=utcnow)  # wall clock, naive UTC

    def clock(self, timezone: str) -> dt.datetime:
        """The run's clock as the ledger stamps its messages (naive UTC): ``as_of`` plus
        the time since the run started. A run as of now records the wall clock; a run
        with ``--as-of`` in the past records its messages at that past moment."""
        return ledger_time(self.as_of, timezone) + (utcnow() - self.started)

    @property
    def occurrence(self) -> str:
        """The run's occurrence as the summary shows it (per_order: decided per customer)."""
        return self.spec.occurrence(self.as_of)
