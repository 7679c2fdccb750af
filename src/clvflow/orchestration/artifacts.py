"""What a campaign run shows in the Prefect UI: a table of counts, a markdown summary with
links to rendered samples, and a progress bar updated while sending."""

from __future__ import annotations

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
from clvflow.campaigns.summary import RunSummary


def artifact_key(campaign: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in campaign.lower())


class Progress:
    """The progress artifact of one run (0-100 %)."""

    def __init__(self, campaign: str) -> None:
        made = create_progress_artifact(
            progress=0.0,
            key=f"{artifact_key(campaign)}-progress",
            description=f"{campaign}: sending",
        )
        assert isinstance(made, UUID)  # synchronous flow: not a coroutine
        self.id = made

    def __call__(self, done: int, total: int) -> None:
        update_progress_artifact(self.id, progress=100.0 * done / total if total else 100.0)


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
