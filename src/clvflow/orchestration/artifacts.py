"""What a campaign run shows in the Prefect UI: a table of counts, a markdown summary with
links to rendered samples, and a progress bar updated while sending.

A sample links to the console's copy of it (``<web base URL>/console/samples/…``, the base
URL from the project's clvflow.yaml: ``web.base_url`` or ``CLVFLOW_WEB_URL``, else
``shop.unsubscribe.base_url``), which a browser opens from the Prefect UI wherever the run
ran; a ``file:`` URL only when the project cannot be read."""

from __future__ import annotations

import dataclasses
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
from clvflow.errors import ClvflowError
from clvflow.pipeline.samples import sample_project
from clvflow.pipeline.summary import RunSummary
from clvflow.project.config import load_config
from clvflow.web.console import links


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


def sample_url(path: str) -> str:
    """Where a browser opens a rendered sample: its page in the console."""
    sample = Path(path).resolve()
    try:
        base = load_config(sample_project(sample)).web_base_url
    except (ClvflowError, IndexError):
        return sample.as_uri()
    return links.absolute(base, links.sample(sample.parent.name, sample.name))


def samples_markdown(summary: RunSummary) -> str:
    lines = ["", "## Rendered sample", ""]
    for variant, path in sorted(summary.samples.items()):
        label = f"variant {variant}" if variant else "the message"
        lines.append(f"- [{label}]({sample_url(path)}) — `{path}`")
    return "\n".join(lines) + "\n"


def publish(summary: RunSummary) -> None:
    key = artifact_key(summary.campaign)
    create_table_artifact(
        key=f"{key}-counts",
        table=count_rows(summary),
        description=f"{summary.campaign}: what happened to each member",
    )
    markdown = summary_markdown(dataclasses.replace(summary, samples={}))
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=markdown + (samples_markdown(summary) if summary.samples else ""),
        description=f"{summary.campaign}: run summary",
    )
    for variant, path in sorted(summary.samples.items()):
        create_link_artifact(
            key=f"{key}-sample-{artifact_key(variant or 'default')}",
            link=sample_url(path),
            link_text=f"{summary.campaign}: rendered sample" + (f" ({variant})" if variant else ""),
        )
