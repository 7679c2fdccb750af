"""A message as a campaign run would send it to one customer: composed by the run's
composer, with the headers of the RFC 5322 message the outbox writes. The templates are
rendered as written, the form a run sends its first messages of each template and locale
in (``clvflow validate`` fails when the linked form a run moves on to differs), so a
template edited a moment ago shows at once. A campaign's promo shows the code
``<PREFIX>-SAMPLE`` (never one that could be redeemed), as the run's rendered samples do."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clvflow.delivery.message import OutgoingMessage
from clvflow.personalization.promo import promo_rows
from clvflow.pipeline.render import display_name
from clvflow.project.campaign_spec import CampaignSpec
from clvflow.project.config import ShopConfig
from clvflow.rendering.composer import Composer

PREVIEW = "preview"  # the campaign name of a preview that names none
HIDDEN_HEADERS = ("Content-Type", "Content-Transfer-Encoding", "MIME-Version", "Date", "Message-ID")


@dataclass
class Message:
    customer_id: str
    template: str
    variant: str  # "" without variants
    locale: str = ""
    subject: str = ""
    preheader: str | None = None
    html: str = ""
    text: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def occurrence_for(spec: CampaignSpec | None, row: dict[str, Any], as_of: dt.datetime) -> str:
    """The occurrence a run at ``as_of`` gives the customer (per order: their latest)."""
    if spec is None:
        return PREVIEW
    if spec.resend == "per_order":
        return str(row.get("last_order_id") or "no-order")
    return spec.occurrence(as_of)


def sample_promos(
    spec: CampaignSpec | None, campaign: str, pairs: list[tuple[str, str]], shop: ShopConfig,
    as_of: dt.datetime,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Customer → the campaign's promo with the sample code (none without a promo)."""
    if spec is None or spec.promo is None or not pairs:
        return {}
    rows = promo_rows(spec.promo, campaign, pairs, shop.currency, as_of)
    code = f"{spec.promo.prefix}-SAMPLE"
    return {str(r["customer_id"]): {**r, "code": code} for r in rows}


def compose(
    composer: Composer,
    shop: ShopConfig,
    template: str,
    row: dict[str, Any],
    *,
    campaign: str = PREVIEW,
    spec: CampaignSpec | None = None,
    variant: str = "",
    locale: str | None = None,
    step: str | None = None,
) -> Message:
    """``template`` rendered for the customer ``row`` (within ``Snapshot.rendering``)."""
    cid = str(row["customer_id"])
    occurrence = occurrence_for(spec, row, composer.as_of)
    promos = sample_promos(spec, campaign, [(occurrence, cid)], shop, composer.as_of)
    (item,) = composer.compose(
        template, campaign, [(occurrence, row)], promos, locale=locale, as_written=True
    )
    out = Message(cid, template, variant, locale=item.locale)
    if item.email is None:
        out.error = str(item.error)
        return out
    headers = dict(item.headers)
    if step:
        headers["X-Clvflow-Step"] = step
    if variant:
        headers["X-Clvflow-Variant"] = variant
    message = OutgoingMessage(
        message_id=0,
        campaign=campaign,
        occurrence=occurrence,
        customer_id=cid,
        to_email=str(row.get("email") or ""),
        to_name=display_name(row),
        from_email=shop.from_email,
        from_name=shop.from_name,
        reply_to=shop.reply_to,
        subject=item.email.subject,
        html=item.email.html,
        text=item.email.text,
        headers=headers,
    )
    try:
        parsed = message.to_email_message()
        out.headers = [(k, str(v)) for k, v in parsed.items() if k not in HIDDEN_HEADERS]
    except (ValueError, TypeError) as exc:  # an address the message cannot carry
        out.headers = [("(headers)", f"the message cannot be built: {exc}")]
    out.subject, out.preheader = item.email.subject, item.email.preheader
    out.html, out.text = item.email.html, item.email.text
    return out
