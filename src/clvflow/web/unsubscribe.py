"""``GET /unsubscribe/{token}`` shows a confirmation; ``POST`` unsubscribes. The POST is also
RFC 8058's one-click endpoint (mail clients send ``List-Unsubscribe=One-Click``). Both verify
the signed token and are idempotent."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from clvflow.compliance.unsubscribe import InvalidTokenError, UnsubscribeClaim, verify_token
from clvflow.web.state import WebState

router = APIRouter()

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>body{{font-family:Georgia,serif;max-width:34em;margin:4em auto;
padding:0 1em;color:#2b2118}}button{{font:inherit;padding:.6em 1.4em;background:#2b2118;
color:#fff;border:0;border-radius:4px;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}<p><small>{shop}</small></p></body></html>"""


def _page(state: WebState, title: str, body: str, status: int = 200) -> HTMLResponse:
    shop = state.project.config.shop
    text = PAGE.format(
        title=html.escape(title),
        body=body,
        shop=html.escape(f"{shop.name} · {shop.postal_address}"),
    )
    return HTMLResponse(text, status_code=status)


def _claim(state: WebState, token: str) -> UnsubscribeClaim | None:
    try:
        return verify_token(state.key, token)
    except InvalidTokenError:
        return None


def _invalid(state: WebState) -> HTMLResponse:
    return _page(
        state,
        "This link is not valid",
        "<p>The unsubscribe link is damaged or was not made by us. Please use the link in "
        "the most recent email, or reply to it and we will take you off the list.</p>",
        status=400,
    )


@router.get("/unsubscribe/{token}")
def confirm(token: str, request: Request) -> HTMLResponse:
    state: WebState = request.app.state.clvflow
    if _claim(state, token) is None:
        return _invalid(state)
    action = html.escape(str(request.url.path))
    return _page(
        state,
        "Unsubscribe from our emails?",
        f'<form method="post" action="{action}"><p>You will no longer get marketing email '
        "from us. Order confirmations still arrive.</p>"
        '<button type="submit" name="confirm" value="yes">Unsubscribe</button></form>',
    )


@router.post("/unsubscribe/{token}")
def unsubscribe(token: str, request: Request) -> HTMLResponse:
    state: WebState = request.app.state.clvflow
    claim = _claim(state, token)
    if claim is None:
        return _invalid(state)
    email = state.ledger.message_email(claim.customer_id) or state.customer_email(claim.customer_id)
    if email is not None:
        state.ledger.suppress(
            email, "unsubscribed", source="unsubscribe-link", customer_id=claim.customer_id,
            campaign=claim.campaign,
        )  # fmt: skip
    return _page(
        state,
        "You are unsubscribed",
        "<p>You will not get marketing email from us any more. Changed your mind? Reply to "
        "any of our emails.</p>",
    )
