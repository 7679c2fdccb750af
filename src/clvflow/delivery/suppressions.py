"""Bring SendGrid's suppression lists (unsubscribes, bounces, spam reports) into the ledger,
so planning skips those addresses before anything is sent (SendGrid would accept the request
and then drop the message)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from clvflow.errors import DeliveryError
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project

LISTS = {
    "unsubscribes": "unsubscribed",
    "bounces": "bounced",
    "spam_reports": "spam_report",
}
PAGE_LIMIT = 500


def fetch_list(
    client: httpx.Client, kind: str, page_size: int = PAGE_LIMIT
) -> list[dict[str, Any]]:
    """Every entry of one suppression list, page by page."""
    entries: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = client.get(
            f"/v3/suppression/{kind}", params={"limit": page_size, "offset": offset}
        )
        if response.status_code in (401, 403):
            raise DeliveryError(
                f"SendGrid refused the suppression request ({response.status_code})",
                hint="the API key needs the 'Suppressions' read scope",
            )
        response.raise_for_status()
        page = response.json()
        if not isinstance(page, list):
            raise DeliveryError(f"unexpected reply from SendGrid for {kind}: not a list")
        entries.extend(e for e in page if isinstance(e, dict) and e.get("email"))
        if len(page) < page_size:
            return entries
        offset += page_size


def sync_suppressions(
    ledger: Ledger,
    api_host: str,
    api_key: str,
    *,
    timeout: float = 10.0,
    page_size: int = PAGE_LIMIT,
) -> Counter[str]:
    """Add SendGrid's suppressions to the ledger; returns new entries per reason."""
    added: Counter[str] = Counter()
    with httpx.Client(
        base_url=api_host.rstrip("/"),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout,
        trust_env=False,
    ) as client:
        for kind, reason in LISTS.items():
            for entry in fetch_list(client, kind, page_size):
                if ledger.suppress(str(entry["email"]), reason, source=f"sendgrid:{kind}"):
                    added[reason] += 1
    return added


def sync_project_suppressions(project: Project, api_key: str | None = None) -> Counter[str]:
    """:func:`sync_suppressions` for a project: its SendGrid settings, key and ledger."""
    from clvflow.delivery.senders import sendgrid_api_key

    sg = project.config.delivery.sendgrid
    key = sendgrid_api_key(project, api_key)
    ledger = Ledger(project.ledger_url)
    try:
        return sync_suppressions(ledger, sg.api_host, key, timeout=sg.timeout_seconds)
    finally:
        ledger.close()
