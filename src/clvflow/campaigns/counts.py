"""A run summary as the rows of the Prefect table artifact and as markdown: members,
skips by reason, holdout, waiting for the send window, sent and failed, per variant and per
locale, and links to rendered samples."""

from __future__ import annotations

from pathlib import Path

from clvflow.pipeline.summary import RunSummary

Row = dict[str, str | int]


def count_rows(summary: RunSummary) -> list[Row]:
    verb = "would send" if summary.dry_run else "sent"
    rows: list[Row] = [{"what": "segment members", "count": summary.members}]
    for reason, count in sorted(summary.skipped.items()):
        rows.append({"what": f"skipped: {reason.replace('_', ' ')}", "count": count})
    rows.append({"what": "holdout (withheld to measure uplift)", "count": summary.holdout})
    if summary.waiting:
        rows.append({"what": "waiting for the send window", "count": summary.waiting})
    if summary.unknown:
        rows.append({"what": "unknown (may have left)", "count": summary.unknown})
    if summary.earlier_unknown:
        rows.append(
            {"what": "unknown (an earlier run stopped mid-send)", "count": summary.earlier_unknown}
        )
    rows.append({"what": "planned", "count": summary.planned})
    rows.append({"what": verb, "count": summary.sent})
    rows.append({"what": "failed", "count": summary.failed})
    variants = sorted(set(summary.planned_by_variant) | set(summary.by_variant))
    for variant in variants:
        rows.append({"what": f"variant {variant}: {verb}", "count": summary.by_variant[variant]})
        if summary.failed_by_variant[variant]:
            rows.append(
                {"what": f"variant {variant}: failed", "count": summary.failed_by_variant[variant]}
            )
    for locale, count in sorted(summary.by_locale.items()):
        rows.append({"what": f"locale {locale}: {verb}", "count": count})
    return rows


def summary_markdown(summary: RunSummary) -> str:
    mode = "dry run" if summary.dry_run else f"run {summary.run_id[:8]}"
    lines = [
        f"# {summary.campaign}",
        "",
        f"Segment `{summary.segment}`, occurrence `{summary.occurrence}`, as of "
        f"{summary.as_of:%Y-%m-%d %H:%M} ({mode}).",
        "",
        "| | count |",
        "|---|---:|",
    ]
    lines += [f"| {row['what']} | {row['count']} |" for row in count_rows(summary)]
    if summary.samples:
        lines += ["", "## Rendered sample", ""]
        for variant, path in sorted(summary.samples.items()):
            label = f"variant {variant}" if variant else "the message"
            lines.append(f"- [{label}]({Path(path).resolve().as_uri()}) — `{path}`")
    if summary.waiting:
        lines += [
            "",
            f"{summary.waiting} message(s) wait for the send window and go out in a later run.",
        ]
    if summary.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {count} × {reason}" for reason, count in summary.failures.most_common(10)]
    return "\n".join(lines) + "\n"
