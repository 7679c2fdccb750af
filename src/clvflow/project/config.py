"""clvflow.yaml: who the shop is, where its data and ledger live, how mail leaves.

Operators override a few settings from the environment: ``CLVFLOW_LEDGER_URL``,
``CLVFLOW_DELIVERY`` (outbox|sendgrid), ``SENDGRID_API_HOST`` and ``CLVFLOW_WEB_URL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from clvflow.errors import ConfigError
from clvflow.measurement.settings import MeasurementConfig
from clvflow.project.yamlfile import read_yaml, validate_document

CONFIG_FILE = "clvflow.yaml"
DEFAULT_LEDGER = "sqlite:///.clvflow/ledger.db"
WEB_URL_ENV = "CLVFLOW_WEB_URL"
_PERIOD = re.compile(r"^\s*(\d+)\s+(day|week)s?\s*$")


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not an IANA time zone (e.g. Europe/Budapest)") from None
    return name


def _no_newlines(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be one line: it becomes part of an email header")
    return value


def period_days(text: str) -> int:
    """``"7 days"`` → 7, ``"2 weeks"`` → 14."""
    match = _PERIOD.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a period such as '7 days' or '2 weeks'")
    n, unit = int(match.group(1)), match.group(2)
    return n * (7 if unit == "week" else 1)


def _check_period(text: str) -> str:
    period_days(text)
    return text


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
HeaderText = Annotated[str, AfterValidator(_no_newlines)]
Period = Annotated[str, AfterValidator(_check_period)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnsubscribeConfig(Strict):
    base_url: HeaderText = Field(
        description="Public https URL of the web app (links: <base_url>/unsubscribe/<token>)"
    )
    mailto: HeaderText = Field(description="Address for mailto: unsubscribes.")


class ShopConfig(Strict):
    name: HeaderText
    url: str
    from_email: HeaderText
    from_name: HeaderText
    reply_to: HeaderText | None = None
    postal_address: str = Field(min_length=5, description="Printed in every marketing email.")
    timezone: TimeZoneName = "UTC"
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    default_locale: str = "en"
    locales: list[str] = Field(default_factory=lambda: ["en"])
    unsubscribe: UnsubscribeConfig


class DataConfig(Strict):
    """Either files (CSV or Parquet, relative to the project) or a database URL."""

    customers: str = "customers"
    orders: str = "orders"
    order_items: str | None = None
    products: str | None = None
    url: str | None = Field(
        default=None,
        description="SQL database URL; when set, the four names above are table names.",
    )


class OutboxConfig(Strict):
    dir: str = "outbox"


class SendGridConfig(Strict):
    api_host: str = "https://api.sendgrid.com"
    sandbox: bool = False
    secret_block: str = "sendgrid-api-key"
    timeout_seconds: float = Field(default=10.0, gt=0)
    concurrency: int = Field(
        default=8, ge=1, le=512, description="Requests in flight (rate ≈ this ÷ round trip)."
    )
    recipients_per_request: int = Field(
        default=500,
        ge=1,
        le=1000,
        description="Messages with the same envelope and mostly the same content go as one "
        "request of up to this many personalizations; 1 sends one request per message.",
    )


class DeliveryConfig(Strict):
    backend: Literal["outbox", "sendgrid"] = "outbox"
    outbox: OutboxConfig = OutboxConfig()
    sendgrid: SendGridConfig = SendGridConfig()


class FrequencyCap(Strict):
    max: int = Field(ge=1, description="At most this many marketing emails per customer...")
    per: Period = Field(description="...within this period, e.g. '7 days'.")

    @property
    def days(self) -> int:
        return period_days(self.per)


class Limits(Strict):
    frequency_cap: FrequencyCap | None = None
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    run_lease_seconds: float = Field(
        default=600,
        ge=1,
        description="A run that has not finished a batch for this long counts as dead.",
    )


class WebConfig(Strict):
    base_url: str | None = Field(
        default=None,
        description="Public URL of the web app for people (the console's links in Prefect "
        "artifacts); default: shop.unsubscribe.base_url.",
    )


class ProjectConfig(Strict):
    shop: ShopConfig
    data: DataConfig = DataConfig()
    ledger: str = DEFAULT_LEDGER
    delivery: DeliveryConfig = DeliveryConfig()
    limits: Limits = Limits()
    measurement: MeasurementConfig = MeasurementConfig()
    web: WebConfig = WebConfig()

    @property
    def web_base_url(self) -> str:
        """Where people reach the web app: ``web.base_url``, else the unsubscribe base URL."""
        return (self.web.base_url or self.shop.unsubscribe.base_url).rstrip("/")

    @model_validator(mode="after")
    def _default_locale_listed(self) -> ProjectConfig:
        if self.shop.default_locale not in self.shop.locales:
            raise ValueError(
                f"shop.default_locale '{self.shop.default_locale}' is not in shop.locales"
            )
        return self


def load_config(project_dir: Path, env: dict[str, str] | None = None) -> ProjectConfig:
    """Read ``clvflow.yaml`` from ``project_dir`` and apply environment overrides."""
    path = project_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            "no clvflow.yaml here",
            path=path,
            hint="run clvflow inside a project folder or pass --project DIR",
        )
    doc = read_yaml(path, ConfigError)
    if not isinstance(doc.data, dict):
        raise ConfigError("the file must be a mapping with at least a 'shop:' key", path=path)
    config = validate_document(doc, ProjectConfig, ConfigError)
    return apply_environment(config, os.environ if env is None else env)


def apply_environment(config: ProjectConfig, env: Mapping[str, str]) -> ProjectConfig:
    """Apply ``CLVFLOW_LEDGER_URL``, ``CLVFLOW_DELIVERY``, ``SENDGRID_API_HOST`` and
    ``CLVFLOW_WEB_URL`` (``web.base_url``)."""
    ledger = env.get("CLVFLOW_LEDGER_URL") or config.ledger
    backend = env.get("CLVFLOW_DELIVERY") or config.delivery.backend
    if backend not in ("outbox", "sendgrid"):
        raise ConfigError(
            f"CLVFLOW_DELIVERY is '{backend}'", hint="set it to 'outbox' or 'sendgrid'"
        )
    sendgrid = config.delivery.sendgrid
    if env.get("SENDGRID_API_HOST"):
        sendgrid = sendgrid.model_copy(update={"api_host": env["SENDGRID_API_HOST"]})
    delivery = config.delivery.model_copy(update={"backend": backend, "sendgrid": sendgrid})
    web = config.web
    if env.get(WEB_URL_ENV):
        web = web.model_copy(update={"base_url": env[WEB_URL_ENV]})
    return config.model_copy(update={"ledger": ledger, "delivery": delivery, "web": web})
