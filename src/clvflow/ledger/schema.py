"""Ledger tables. ``messages`` has one row per (campaign, occurrence, customer): the
database itself guarantees one customer never gets one campaign occurrence twice."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Table as SATable

metadata = MetaData()

# status: claimed (this run owns it, not yet handed to the sender) → sending (handed over,
# outcome not yet known) → sent | failed | unknown (may or may not have left); or holdout.
messages = SATable(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(200), nullable=False),
    Column("occurrence", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("kind", String(20), nullable=False, default="marketing"),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("template", String(200)),
    Column("variant", String(100)),
    Column("locale", String(35)),
    Column("subject", Text),
    Column("provider_id", String(200)),
    Column("run_id", String(64), nullable=False),
    Column("planned_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    UniqueConstraint("campaign", "occurrence", "customer_id", name="uq_message_occurrence"),
)
Index("ix_messages_customer_finished", messages.c.customer_id, messages.c.finished_at)
Index("ix_messages_run", messages.c.run_id, messages.c.status)

skips = SATable(
    "skips",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("campaign", String(200), nullable=False),
    Column("occurrence", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("reason", String(100), nullable=False),
    Column("at", DateTime, nullable=False),
)

suppressions = SATable(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(50), nullable=False),  # unsubscribed | bounced | spam_report | manual
    Column("source", String(100), nullable=False),
    Column("customer_id", String(200)),
    Column("campaign", String(200)),
    Column("created_at", DateTime, nullable=False),
)

promo_codes = SATable(
    "promo_codes",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("occurrence", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("discount_percent", Float, nullable=False),
    Column("min_order", Float, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("redeemed_at", DateTime),
    UniqueConstraint("campaign", "occurrence", "customer_id", name="uq_promo_occurrence"),
)

Index("ix_promo_codes_redeemed", promo_codes.c.campaign, promo_codes.c.redeemed_at)

# engagement and delivery events from SendGrid's Event Webhook, deduplicated on sg_event_id
events = SATable(
    "events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("event", String(50), nullable=False),
    Column("email", String(320)),
    Column("message_id", Integer, index=True),  # ledger messages.id, when it maps back
    Column("campaign", String(200)),
    Column("customer_id", String(200)),
    Column("occurred_at", DateTime),
    Column("received_at", DateTime, nullable=False),
    Column("detail", Text),  # the raw event, JSON
)

runs = SATable(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("occurrence", String(200), nullable=False),
    Column("as_of", DateTime, nullable=False),
    Column("dry_run", Integer, nullable=False, default=0),
    Column("status", String(20), nullable=False),  # running | finished | failed
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    # a live run pushes this forward after every batch; past it, the run counts as dead
    Column("lease_until", DateTime, nullable=False),
    Column("summary", Text),
)

# one row per (journey, entry occurrence, customer); its steps are ``messages`` rows of the
# journey with occurrence "<entry occurrence>/<step name>" (status sent, failed, unknown or
# skipped with the reason). ``step`` is the index of the next step to decide and
# ``step_at`` when the one before it was decided (at first: when the entry entered).
journey_entries = SATable(
    "journey_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("journey", String(200), nullable=False),
    Column("occurrence", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("entered_at", DateTime, nullable=False),
    Column("holdout", Integer, nullable=False, default=0),
    Column("step", Integer, nullable=False, default=0),
    Column("step_at", DateTime, nullable=False),
    Column("exited_at", DateTime),
    Column("exit_reason", String(50)),
    Column("run_id", String(64), nullable=False),
    UniqueConstraint("journey", "occurrence", "customer_id", name="uq_journey_entry"),
)
Index("ix_journey_entries_active", journey_entries.c.journey, journey_entries.c.exited_at)
Index("ix_journey_entries_customer", journey_entries.c.customer_id)
