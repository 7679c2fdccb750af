"""What the web app's routes share: the project, its ledger and the signing key."""

from __future__ import annotations

from dataclasses import dataclass

from clvflow.data.sources import in_list, open_shop_data
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project


@dataclass
class WebState:
    project: Project
    ledger: Ledger
    key: bytes
    webhook_public_key: str | None
    max_webhook_age_seconds: int = 600

    def customer_email(self, customer_id: str) -> str | None:
        """The address in the shop's data (for a customer the ledger has not written to)."""
        data = open_shop_data(self.project)
        try:
            rows = data.rows(
                f"{data.with_clause()}SELECT email FROM customers "
                f"WHERE customer_id IN {in_list([customer_id])}"
            )
        finally:
            data.close()
        return str(rows[0][0]) if rows and rows[0][0] else None
