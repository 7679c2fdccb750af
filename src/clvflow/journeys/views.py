"""A journey run and the journey's standing as rows (Prefect table artifact, terminal)
and as a markdown funnel."""

from __future__ import annotations

from collections import Counter

from clvflow.journeys.status import JourneyStatus
from clvflow.journeys.summary import JourneySummary

Row = dict[str, str | int]


def _reasons(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "-"


def step_rows(summary: JourneySummary | None, status: JourneyStatus) -> list[Row]:
    """Per step: this run's due, sent, skipped and exited (with ``summary``), and the
    journey's waiting, sent, skipped, exited and converted so far."""
    rows: list[Row] = []
    for at in status.steps:
        row: Row = {"step": at.name}
        if summary is not None:
            run = summary.steps[at.name]
            row.update(
                {
                    "due now": run.due,
                    "sent now": run.sent,
                    "skipped now": _reasons(run.skipped),
                    "exited now": _reasons(run.exited),
                }
            )
        row.update(
            {
                "waiting": at.waiting,
                "sent": at.sent,
                "failed": at.failed,
                "skipped": _reasons(at.skipped),
                "exited": _reasons(at.exited),
                "converted": "-" if at.converted is None else at.converted,
            }
        )
        rows.append(row)
    return rows


def funnel_markdown(summary: JourneySummary | None, status: JourneyStatus) -> str:
    lines = [f"# {status.journey}", ""]
    if summary is not None:
        mode = "dry run" if summary.dry_run else f"run {summary.run_id[:8]}"
        lines += [
            f"As of {summary.as_of:%Y-%m-%d %H:%M} ({mode}): {summary.entered} entered "
            f"({summary.held_out} in the holdout), {summary.sent} sent, "
            f"{summary.failed} failed.",
            "",
        ]
    lines += [
        f"{status.entries} entries so far: {status.holdout} held out, "
        f"{status.completed} completed.",
        "",
        "| step | reached | sent | skipped | exited | waiting | converted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for at in status.steps:
        skipped = sum(at.skipped.values())
        exited = sum(at.exited.values())
        reached = at.sent + at.failed + skipped + exited + at.waiting
        converted = "-" if at.converted is None else str(at.converted)
        lines.append(
            f"| {at.name} | {reached} | {at.sent} | {skipped} | {exited} | {at.waiting} "
            f"| {converted} |"
        )
    return "\n".join(lines) + "\n"
