"""Compose personal emails for a batch of customers: context (order, recommendations,
promo, signed unsubscribe link), locale choice, rendering and the compliance check.

Used by campaign runs, ``clvflow validate`` and ``clvflow preview`` alike. A run renders the
first ``LINK_AFTER - 1`` messages of each (template, locale) as written and the rest through
the template linked into one (``linked``); ``preview`` and ``validate`` link at once
(``link_at_once``), so they render what a run sends from then on, and ``validate`` also
renders as written (``as_written``) to compare the two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clvflow.compliance.unsubscribe import Signer, list_unsubscribe_headers, unsubscribe_url
from clvflow.data.sources import ShopData
from clvflow.errors import TemplateError
from clvflow.personalization.batch import Personalization
from clvflow.personalization.orders import OrderView
from clvflow.personalization.recommendations import Recommender
from clvflow.project.config import ShopConfig
from clvflow.rendering.context import message_context, shop_context
from clvflow.rendering.linked import LinkedTemplate, link_parts
from clvflow.rendering.render import RenderedEmail, check_compliance, render_email
from clvflow.rendering.templates import CompiledTemplate, TemplateLibrary
from clvflow.rendering.trees import UnlinkableError

# A run links a (template, locale) into one template (``linked``) for its LINK_AFTER-th
# message: linking takes longer than rendering a message, and a triggered run renders one.
LINK_AFTER = 16


@dataclass(slots=True)
class Composed:
    """A message composed for a customer, or the error that stopped it (slots, as
    ``RenderedEmail``)."""

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
        *,
        link_at_once: bool = False,
    ) -> None:
        """``link_at_once``: link each (template, locale) for its first message instead of
        its ``LINK_AFTER``-th (``preview``, ``validate``)."""
        self.shop = shop
        self.data = data
        self.templates = templates
        self.key = key
        self.as_of = as_of
        self._shop_context = shop_context(shop)
        self._personal = Personalization(data, as_of)
        self._signer = Signer(key)
        self._link_after = 1 if link_at_once else LINK_AFTER
        self._linked: dict[tuple[str, str], LinkedTemplate | None] = {}
        self._uses: dict[tuple[str, str], int] = {}

    def _linked_for(
        self, compiled: CompiledTemplate, locale: str, now: bool = False
    ) -> LinkedTemplate | None:
        """The linked template for (template, locale), made for its ``link_after``-th
        message (at once with ``now``); None before that or if it cannot be linked."""
        key = (compiled.name, locale)
        if key in self._linked:
            return self._linked[key]
        uses = self._uses[key] = self._uses.get(key, 0) + 1
        if uses < self._link_after and not now:
            return None
        try:
            linked: LinkedTemplate | None = link_parts(
                compiled.html,
                compiled.text,
                locale,
                self._shop_context,
                (
                    compiled.subject.environment,
                    compiled.head_source,
                    compiled.preheader is not None,
                ),
            )
        except UnlinkableError:
            linked = None
        self._linked[key] = linked
        return linked

    def prepare_tables(self) -> None:
        """Build the per-run lookup tables now (latest orders, recommendations: on files,
        queries of the in-process engine) rather than on the first batch."""
        self._personal.prepare()

    def expect(self, customer_ids: Sequence[str]) -> None:
        """The customers the next batches are for, in order (their data is read ahead)."""
        self._personal.expect(customer_ids)

    def prepare(self, template: str, locales: Sequence[str] | None = None) -> None:
        """Do now what the first batches would do: the per-run lookup tables, and the
        linked template for each locale (default: the shop's)."""
        self.prepare_tables()
        for locale in locales or self.shop.locales:
            self._linked_for(self.templates.get(template, locale), locale, now=True)

    @property
    def recommender(self) -> Recommender:
        return self._personal.recommender

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
        *,
        as_written: bool = False,
    ) -> list[Composed]:
        """Render ``template`` for each (occurrence, customer row); errors are per customer.
        ``orders`` (customer → order) overrides the latest order, e.g. the triggering one.
        ``as_written``: render the template files as written, never the linked template
        (``validate`` compares the two)."""
        ids = [str(row["customer_id"]) for _, row in rows]
        locales = [self.locale_for(row, locale) for _, row in rows]
        linked = [self._linked.get((template, loc)) for loc in set(locales)]
        items = as_written or any(t is None or t.reads_items for t in linked)  # else no lines
        latest, recos = self._personal.for_customers(ids, items)
        if orders:
            latest.update({i: orders[i] for i in ids if i in orders})
        orders = latest
        out: list[Composed] = []
        unsubscribe = unsubscribe_url(self.shop.unsubscribe.base_url, "")  # + the token
        mailto, postal_address = self.shop.unsubscribe.mailto, self.shop.postal_address
        for (occurrence, row), cid, chosen in zip(rows, ids, locales, strict=True):
            token = self._signer.token(cid, campaign)
            url = unsubscribe + token
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
                one = None if as_written else self._linked_for(compiled, chosen)
                email = render_email(compiled, context, one)
                check_compliance(email, url, postal_address, str(compiled.html_path))
            except TemplateError as exc:
                out.append(Composed(cid, None, exc, headers, chosen))
                continue
            if email.kind == "marketing":
                headers.update(list_unsubscribe_headers(url, mailto, token))
            out.append(Composed(cid, email, None, headers, compiled.locale or chosen))
        return out
