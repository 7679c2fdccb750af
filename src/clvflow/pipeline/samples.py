"""A rendered sample of each variant, written for people to look at (the run's summary
links it); nothing is sent or recorded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clvflow.ledger.store import Claim
from clvflow.personalization.orders import OrderView
from clvflow.personalization.promo import promo_rows
from clvflow.pipeline.job import Job
from clvflow.pipeline.render import Rows
from clvflow.pipeline.workspace import Workspace
from clvflow.planning.variants import assign_variants

SAMPLES = "samples"  # under the project's .clvflow/


def write_samples(
    ws: Workspace,
    job: Job,
    claims: Sequence[Claim],
    rows: Rows,
    orders: dict[str, OrderView] | None = None,
) -> dict[str, str]:
    """The first message of each variant as an HTML file under ``.clvflow/samples/``:
    variant (or "") → path. A sample carries the code ``<PREFIX>-SAMPLE``, never one that
    could be redeemed."""
    firsts: dict[str | None, Claim] = {}
    ids = [c.customer_id for c in claims]
    for claim, variant in zip(
        claims, assign_variants(job.name, ids, job.spec.variants), strict=True
    ):
        firsts.setdefault(variant, claim)
    found = rows([c.customer_id for c in firsts.values()])
    folder = ws.project.state_dir / SAMPLES / _safe(job.name)
    out: dict[str, str] = {}
    for variant, claim in firsts.items():
        promos = {}
        if job.spec.promo is not None:
            pair = [(claim.occurrence, claim.customer_id)]
            (row,) = promo_rows(
                job.spec.promo, job.name, pair, ws.project.config.shop.currency, job.as_of
            )
            promos[claim.customer_id] = {**row, "code": f"{job.spec.promo.prefix}-SAMPLE"}
        (item,) = ws.composer.compose(
            job.spec.template_of(variant),
            job.name,
            [(claim.occurrence, found[claim.customer_id])],
            promos,
            orders=orders,
        )
        if item.email is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{job.run_id[:12]}-{_safe(variant or 'default')}.html"
        path.write_text(item.email.html, encoding="utf-8")
        out[variant or ""] = str(Path(path))
    return out


def sample_project(path: Path) -> Path:
    """The project folder a sample was written in (its path is
    ``<project>/.clvflow/samples/<campaign>/<file>``)."""
    return path.resolve().parents[3]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
