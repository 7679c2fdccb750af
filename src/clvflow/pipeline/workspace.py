"""What a run reads and writes, opened once: the shop's data, the ledger, the templates and
the composer that renders with them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from clvflow.compliance.secret import signing_key
from clvflow.data.sources import ShopData, open_shop_data
from clvflow.ledger.store import Ledger
from clvflow.project.layout import Project
from clvflow.rendering.composer import Composer
from clvflow.rendering.templates import TemplateLibrary


class Workspace:
    """Open handles, not a run's state. (A plain class: Prefect passes it to tasks as it is.)"""

    def __init__(
        self,
        project: Project,
        data: ShopData,
        ledger: Ledger,
        templates: TemplateLibrary,
        composer: Composer,
    ) -> None:
        self.project = project
        self.data = data
        self.ledger = ledger
        self.templates = templates
        self.composer = composer

    def kind(self, templates: Sequence[str]) -> str:
        """``marketing`` if any of ``templates`` is, else ``transactional``."""
        kinds = {self.templates.get(name, None).front.kind for name in templates}
        return "marketing" if "marketing" in kinds else "transactional"

    def sends_transactional(self, templates: Sequence[str]) -> bool:
        """Whether any of ``templates`` is transactional (such mail is never held out)."""
        return any(
            self.templates.get(name, None).front.kind == "transactional" for name in templates
        )


@contextmanager
def open_workspace(project: Project, as_of: dt.datetime) -> Iterator[Workspace]:
    """Open everything a run at ``as_of`` needs; closed again when the block ends."""
    cfg = project.config
    templates = TemplateLibrary.for_project(project)
    key = signing_key(project.state_dir, allow_local=cfg.delivery.backend == "outbox")
    with ExitStack() as stack:
        data = open_shop_data(project)
        stack.callback(data.close)
        ledger = Ledger(project.ledger_url)
        stack.callback(ledger.close)
        composer = Composer(cfg.shop, data, templates, key, as_of)
        yield Workspace(project, data, ledger, templates, composer)
