"""Compose personal emails for a batch of customers: context (order, recommendations,
promo, signed unsubscribe link), locale choice, rendering and the compliance check.

Used by campaign runs, ``clvflow validate`` and ``clvflow preview`` alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clvflow.compliance.unsubscribe import list_unsubscribe_headers, make_token, unsubscribe_url
from clvflow.data.sources import ShopData
from clvflow.errors import TemplateError
from clvflow.personalization.orders import OrderLookup, OrderView
from clvflow.personalization.recommendations import Recommender
from clvflow.project.config import ShopConfig
from clvflow.rendering.context import message_context, shop_context
from clvflow.rendering.render import RenderedEmail, check_compliance, render_email
from clvflow.rendering.templates import TemplateLibrary


@dataclass(frozen=True)
class Composed:
    customer_id: str
    email: RenderedEmail | None
    error: TemplateError | None
    headers: dict[str, str]
    locale: str


class Composer:
    def __init__(
        self,
        shop: ShopConfig,
        data: ShopData,
        templates: TemplateLibrary,
        key: bytes,
        as_of: dt.datetime,
    ) -> None:
        self.shop = shop
        self.data = data
        self.templates = templates
        self.key = key
        self.as_of = as_of
        self._shop_context = shop_context(shop)
        self._recommender: Recommender | None = None
        self._orders = OrderLookup(data, as_of)

    @property
    def recommender(self) -> Recommender:
        if self._recommender is None:
            self._recommender = Recommender(self.data, self.as_of)
        return self._recommender

    def locale_for(self, row: dict[str, Any], override: str | None = None) -> str:
        value = override or row.get("locale")
        if isinstance(value, str) and value:
            tag = value.replace("_", "-")
            if tag in self.shop.locales or tag.split("-")[0] in self.shop.locales:
                return tag
        return self.shop.default_locale

    def compose(
        self,
        template: str,
        campaign: str,
        rows: Sequence[tuple[str, dict[str, Any]]],
        promos: dict[str, dict[str, Any]] | None = None,
        locale: str | None = None,
        orders: dict[str, OrderView] | None = None,
    ) -> list[Composed]:
        """Render ``template`` for each (occurrence, customer row); errors are per customer.
        ``orders`` (customer → order) overrides the latest order, e.g. the triggering one."""
        ids = [str(row["customer_id"]) for _, row in rows]
        given = orders or {}
        orders = self._orders.for_customers([i for i in ids if i not in given])
        orders.update({i: given[i] for i in ids if i in given})
        recos = self.recommender.for_customers(ids)
        out: list[Composed] = []
        for occurrence, row in rows:
            cid = str(row["customer_id"])
            token = make_token(self.key, cid, campaign)
            url = unsubscribe_url(self.shop.unsubscribe.base_url, token)
            chosen = self.locale_for(row, locale)
            headers = {"X-Clvflow-Campaign": campaign}
            try:
                compiled = self.templates.get(template, chosen)
                context = message_context(
                    customer=row,
                    shop=self._shop_context,
                    campaign={"name": campaign, "occurrence": occurrence},
                    order=orders.get(cid),
                    recommendations=recos.get(cid, []),
                    promo=(promos or {}).get(cid),
                    unsubscribe_url=url,
                    locale=chosen,
                    now=self.as_of,
                )
                email = render_email(compiled, context)
                check_compliance(email, url, self.shop.postal_address, str(compiled.html_path))
            except TemplateError as exc:
                out.append(Composed(cid, None, exc, headers, chosen))
                continue
            if email.kind == "marketing":
                headers.update(list_unsubscribe_headers(url, self.shop.unsubscribe.mailto, token))
            out.append(Composed(cid, email, None, headers, compiled.locale or chosen))
        return out
