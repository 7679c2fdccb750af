"""Shared fixtures: temporary projects built from {path: contents}, the tiny hand-made shop,
a small generated demo shop, and one Prefect test harness for the whole session."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import email.message

    from sqlalchemy import Engine, Executable

    from clvflow.project.layout import Project

# Prefect reads its settings at import: point it at a throwaway home before any test does.
_PREFECT_HOME = tempfile.mkdtemp(prefix="clvflow-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["CLVFLOW_SECRET_KEY"] = "test-signing-key-0123456789abcdef"
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
for _name in ("CLVFLOW_LEDGER_URL", "CLVFLOW_DELIVERY", "SENDGRID_API_HOST", "PREFECT_API_URL"):
    os.environ.pop(_name, None)

ROOT = Path(__file__).resolve().parents[1]
TINY_SHOP = ROOT / "tests" / "data" / "tiny_shop"
AS_OF = dt.datetime(2026, 11, 23, 12, 0)
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

BASE_CONFIG = """\
shop:
  name: Test Shop
  url: https://shop.example
  from_email: hello@shop.example
  from_name: Test Shop
  postal_address: 1 Test Street, 1000 Testville
  timezone: Europe/Budapest
  currency: EUR
  default_locale: en
  locales: [en, hu, ru]
  unsubscribe:
    base_url: https://shop.example/email
    mailto: unsubscribe@shop.example
data:
  customers: data/customers.csv
  orders: data/orders.csv
  order_items: data/order_items.csv
  products: data/products.csv
ledger: sqlite:///.clvflow/ledger.db
"""

ProjectFactory = Callable[..., Path]


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def ledger_rows(project: Project, statement: Executable) -> list[tuple[Any, ...]]:
    """The rows ``statement`` reads from the project's ledger, as tuples."""
    from clvflow.ledger.store import Ledger

    ledger = Ledger(project.ledger_url)
    try:
        with ledger.engine.connect() as con:
            return [tuple(row) for row in con.execute(statement)]
    finally:
        ledger.close()


def outbox_email(
    project: Project, campaign: str, occurrence: str, customer: str
) -> email.message.EmailMessage:
    """The message the outbox backend wrote for one customer of one campaign occurrence."""
    import email
    from email import policy

    path = project.outbox_dir / campaign / occurrence / f"{customer}.eml"
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


# a one-shot campaign on the shipped segment and template (prefect.yaml ships the win-back
# journey instead): the delivery tests send it through every backend
WIN_BACK_CAMPAIGN = """
  - name: win-back
    description: Win back lapsed repeat buyers with a unique, time-limited code
    entrypoint: flows/campaign.py:campaign_flow
    tags: [clvflow, win-back]
    schedules:
      - cron: "0 10 * * 1"
        timezone: Europe/Budapest
    parameters:
      campaign: win-back
      spec:
        segment: lapsed
        template: win_back
        resend: {every: 90 days}
        holdout_percent: 10
        send_window: {start: "09:00", end: "20:00"}
        promo: {discount_percent: 15, min_order: 40, valid_days: 21, prefix: BACK}
"""


def add_win_back_campaign(root: Path) -> None:
    """Append the one-shot win-back campaign to the project's prefect.yaml (whose last
    top-level key is ``deployments``)."""
    prefect = root / "prefect.yaml"
    prefect.write_text(prefect.read_text().rstrip("\n") + "\n" + WIN_BACK_CAMPAIGN)


def add_orders(
    project: Project, orders: list[tuple[str, dt.datetime, float]], prefix: str = "T"
) -> None:
    """Append (customer, placed at, total) orders to the project's ``data/orders.csv``."""
    import pandas as pd

    path = project.root / "data" / "orders.csv"
    base = pd.read_csv(path, dtype=str)
    added = pd.DataFrame(
        {
            "order_id": [f"{prefix}{len(base) + i}" for i in range(len(orders))],
            "customer_id": [c for c, _, _ in orders],
            "placed_at": [at.strftime("%Y-%m-%d %H:%M:%S") for _, at, _ in orders],
            "total": [f"{total:.2f}" for _, _, total in orders],
            "currency": "EUR",
        }
    )
    pd.concat([base, added]).to_csv(path, index=False)


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """A project on the tiny hand-made shop; ``files`` adds or replaces files."""

    def build(files: dict[str, str] | None = None, *, config: str = BASE_CONFIG) -> Path:
        root = tmp_path / "project"
        shutil.copytree(TINY_SHOP, root / "data", dirs_exist_ok=True)
        (root / "segments").mkdir(parents=True, exist_ok=True)
        (root / "templates").mkdir(parents=True, exist_ok=True)
        write_files(root, {"clvflow.yaml": config, **(files or {})})
        return root

    return build


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated demo shop (same generator as `clvflow demo`), as of AS_OF's day."""
    from clvflow.demo.shop import ShopSize, generate_shop

    folder = tmp_path_factory.mktemp("demo-data")
    generate_shop(
        folder, reference=AS_OF.date(), seed=7, size=ShopSize(customers=1200, orders=4800)
    )
    return folder


@pytest.fixture
def demo_project(tmp_path: Path, demo_data: Path) -> Path:
    """A copy of the repository's own project (segments, templates, prefect.yaml)."""
    root = tmp_path / "demo"
    root.mkdir()
    for name in ("segments", "templates", "flows"):
        shutil.copytree(ROOT / name, root / name)
    for name in ("clvflow.yaml", "prefect.yaml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(demo_data, root / "data")
    manifest = {"reference": AS_OF.date().isoformat(), "seed": 7}
    (root / "data" / "demo-shop.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect test harness (a real local API server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


_SENDGRID_AUDIT: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _sendgrid_bodies_match_the_published_schema() -> Iterator[None]:
    """Every body a SendGrid stand-in accepted in this session must validate against
    SendGrid's published schema (tests/sendgrid_audit.py); the summary prints the count."""
    from tests.sendgrid_audit import audit_session

    with audit_session() as audit:
        yield
    _SENDGRID_AUDIT.append(audit.line())
    assert not audit.invalid, "accepted bodies that break SendGrid's schema: " + "; ".join(
        audit.invalid[:5]
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A test process of a parallel run hands its audit line to the controlling one."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["sendgrid_audit"] = list(_SENDGRID_AUDIT)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controlling process of a parallel run collects each test process's audit line."""
    _SENDGRID_AUDIT.extend(getattr(node, "workeroutput", {}).get("sendgrid_audit", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SENDGRID_AUDIT:
        terminalreporter.write_line(line)


@contextmanager
def postgres_schema(prefix: str) -> Iterator[tuple[Engine, str]]:
    """A fresh schema in the machine's PostgreSQL (database ``test``), dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as con:
        con.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield engine, schema
    finally:
        with engine.begin() as con:
            con.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def postgres_tables(
    prefix: str, ddl: Mapping[str, str], rows: Mapping[str, Iterable[Mapping[str, Any]]]
) -> Iterator[str]:
    """A fresh schema holding the tables of ``ddl`` (name → column definitions), filled
    with ``rows`` (name → rows as column → value); yields the schema's name."""
    from sqlalchemy import text

    with postgres_schema(prefix) as (engine, schema):
        with engine.begin() as con:
            for table, columns in ddl.items():
                con.execute(text(f'CREATE TABLE "{schema}"."{table}" ({columns})'))
                for row in rows.get(table, ()):
                    names = ", ".join(f'"{k}"' for k in row)
                    marks = ", ".join(f":{k}" for k in row)
                    con.execute(
                        text(f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})'),
                        dict(row),
                    )
        yield schema


@pytest.fixture
def pg_ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ledger in a schema of its own (``CLVFLOW_LEDGER_URL`` points at it)."""
    with postgres_schema("ledger") as (_, schema):
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        monkeypatch.setenv("CLVFLOW_LEDGER_URL", url)
        yield url
