"""A run summary as table rows (terminal and Prefect table artifact) and markdown."""

from __future__ import annotations

from clvflow.campaigns.runner import RunSummary


def summary_rows(summary: RunSummary) -> list[dict[str, str | int]]:
    rows: list[dict[str, str | int]] = [{"what": "segment members", "count": summary.members}]
    for reason, count in sorted(summary.skipped.items()):
        rows.append({"what": f"skipped: {reason.replace('_', ' ')}", "count": count})
    if summary.holdout:
        rows.append({"what": "holdout (withheld to measure uplift)", "count": summary.holdout})
    if summary.unknown:
        rows.append({"what": "unknown (an earlier run stopped mid-send)", "count": summary.unknown})
    verb = "would send" if summary.dry_run else "sent"
    rows.append({"what": verb, "count": summary.sent})
    rows.append({"what": "failed", "count": summary.failed})
    for locale, count in sorted(summary.by_locale.items()):
        rows.append({"what": f"  {verb} in locale {locale}", "count": count})
    return rows


def summary_markdown(summary: RunSummary) -> str:
    lines = [
        f"# {summary.campaign}",
        "",
        f"Segment `{summary.segment}` as of {summary.as_of:%Y-%m-%d %H:%M} "
        f"({'dry run' if summary.dry_run else 'run ' + summary.run_id[:8]}).",
        "",
        "| | count |",
        "|---|---:|",
    ]
    lines += [f"| {row['what']} | {row['count']} |" for row in summary_rows(summary)]
    if summary.failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {count} × {reason}" for reason, count in summary.failures.most_common(10)]
    return "\n".join(lines) + "\n"
