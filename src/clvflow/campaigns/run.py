"""Run one campaign: its segment's members through the pipeline (plan → claim → render →
send → record), with the configured sender. The Prefect flow runs the same stages as tasks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

from clvflow.campaigns.catalog import Campaign
from clvflow.delivery.base import Sender
from clvflow.delivery.senders import open_sender
from clvflow.pipeline import run as pipeline
from clvflow.pipeline.job import Job
from clvflow.pipeline.summary import RunSummary
from clvflow.pipeline.workspace import Workspace, open_workspace
from clvflow.project.clock import local_now
from clvflow.project.layout import Project
from clvflow.segments.catalog import SegmentCatalog, compile_segment
from clvflow.segments.members import member_frame


def campaign_job(
    project: Project,
    campaign: Campaign,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    run_id: str | None = None,
) -> Job:
    when = (as_of or local_now(project.config.shop.timezone)).replace(tzinfo=None)
    if run_id is None:
        return Job(campaign.name, campaign.spec, when, dry_run=dry_run)
    return Job(campaign.name, campaign.spec, when, run_id=run_id, dry_run=dry_run)


def new_summary(job: Job, segment: str) -> RunSummary:
    return RunSummary(
        campaign=job.name,
        run_id=job.run_id,
        as_of=job.as_of,
        dry_run=job.dry_run,
        segment=segment,
        occurrence=job.occurrence,
    )


def segment_members(ws: Workspace, segment: str, as_of: dt.datetime) -> pd.DataFrame:
    """The segment's members as of ``as_of``, with every attribute."""
    catalog = SegmentCatalog.load(ws.project.segments_dir)
    compiled = compile_segment(catalog, segment, ws.data, as_of)
    return member_frame(ws.data, compiled, as_of)


@contextmanager
def workspace_and_sender(
    project: Project, when: dt.datetime, dry_run: bool, sender: Sender | None
) -> Iterator[tuple[Workspace, Sender | None]]:
    """A run's workspace and sender: ``sender``, else the configured one (opened and
    closed here; none for a dry run). A sender that cannot open (no key, a bad URL) stops
    the run before anything is planned."""
    owned = None if sender is not None or dry_run else open_sender(project)
    try:
        with open_workspace(project, when) as ws:
            yield ws, sender or owned
    finally:
        if owned is not None:
            owned.close()


@contextmanager
def opened(
    project: Project,
    campaign: Campaign,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
) -> Iterator[tuple[Workspace, Job, Sender | None]]:
    """A campaign run's workspace, job and sender (see :func:`workspace_and_sender`)."""
    job = campaign_job(project, campaign, as_of, dry_run)
    with workspace_and_sender(project, job.as_of, dry_run, sender) as (ws, chosen):
        yield ws, job, chosen


def run_campaign(
    project: Project,
    campaign: Campaign,
    *,
    as_of: dt.datetime | None = None,
    dry_run: bool = False,
    sender: Sender | None = None,
    progress: pipeline.Progress | None = None,
) -> RunSummary:
    """Run a campaign without Prefect."""
    with opened(project, campaign, as_of, dry_run, sender) as (ws, job, chosen):
        members = segment_members(ws, campaign.spec.segment, job.as_of)
        summary = new_summary(job, campaign.spec.segment)
        return pipeline.run(ws, job, members, chosen, summary, progress=progress)
