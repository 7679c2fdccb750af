"""What a campaign run shows in the Prefect UI: a table of counts, a markdown summary with
links to rendered samples, and a progress bar updated while sending."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from clvflow.campaigns.counts import count_rows, summary_markdown
from clvflow.pipeline.summary import RunSummary


def artifact_key(campaign: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in campaign.lower())


class Progress:
    """The progress artifact of one run (0-100 %), updated while sending: after a batch
    once the bar has moved by ``step`` percent or ``every`` seconds have passed, and at the
    end (each update is a round trip to the Prefect API, so not after every batch)."""

    def __init__(self, campaign: str, step: float = 5.0, every: float = 10.0) -> None:
        made = create_progress_artifact(
            progress=0.0,
            key=f"{artifact_key(campaign)}-progress",
            description=f"{campaign}: sending",
        )
        assert isinstance(made, UUID)  # synchronous flow: not a coroutine
        self.id = made
        self.step = step
        self.every = every
        self.shown = 0.0
        self.at = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        value = 100.0 * done / total if total else 100.0
        now = time.monotonic()
        if value >= 100.0 or value - self.shown >= self.step or now - self.at >= self.every:
            update_progress_artifact(self.id, progress=value)
            self.shown, self.at = value, now


def publish(summary: RunSummary) -> None:
    key = artifact_key(summary.campaign)
    create_table_artifact(
        key=f"{key}-counts",
        table=count_rows(summary),
        description=f"{summary.campaign}: what happened to each member",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=summary_markdown(summary),
        description=f"{summary.campaign}: run summary",
    )
    for variant, path in sorted(summary.samples.items()):
        create_link_artifact(
            key=f"{key}-sample-{artifact_key(variant or 'default')}",
            link=Path(path).resolve().as_uri(),
            link_text=f"{summary.campaign}: rendered sample" + (f" ({variant})" if variant else ""),
        )
