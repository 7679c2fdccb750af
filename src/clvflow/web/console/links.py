"""The console's addresses: paths inside the web app, and absolute URLs from the project's
public base URL (``web.base_url``, else ``shop.unsubscribe.base_url``) for links made
elsewhere (the Prefect artifacts)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

PREFIX = "/console"


def _part(value: str) -> str:
    return quote(value, safe="")


def overview() -> str:
    return f"{PREFIX}/"


def segment(name: str) -> str:
    return f"{PREFIX}/segments/{_part(name)}"


def customer(customer_id: str) -> str:
    return f"{PREFIX}/customers/{_part(customer_id)}"


def preview(template: str, customer_id: str, locale: str = "", campaign: str = "") -> str:
    query = {"template": template, "customer": customer_id, "locale": locale}
    if campaign:
        query["campaign"] = campaign
    return f"{PREFIX}/preview?{urlencode(query)}"


def dry_run(campaign: str) -> str:
    return f"{PREFIX}/campaigns/{_part(campaign)}/dry-run"


def journey(name: str) -> str:
    return f"{PREFIX}/journeys/{_part(name)}"


def report() -> str:
    return f"{PREFIX}/report"


def sample(campaign_folder: str, file_name: str) -> str:
    """A rendered sample a run wrote (``.clvflow/samples/<campaign>/<file>``)."""
    return f"{PREFIX}/samples/{_part(campaign_folder)}/{_part(file_name)}"


def absolute(base_url: str, path: str) -> str:
    """``path`` (from this module) under the web app's public ``base_url``."""
    return base_url.rstrip("/") + path
