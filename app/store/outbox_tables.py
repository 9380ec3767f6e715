"""Tables of the subscription outbox (docs/events.md). Each leads with `tenant_id`.

- `subscriptions`: a Subscription's delivery configuration (the channel headers in full,
  which the FHIR resource shows masked), its status and `events_count`, the per-subscription
  event counter; only the numbering step (after the order commits) increments it.
- `subscription_outbox`: the transactional outbox proper, one un-numbered row per
  (change, matching subscription), inserted in the transaction of the order change with no
  shared row touched; `seq` (an identity) orders them. The numbering step moves them to
  `subscription_events`.
- `subscription_events`: numbered events, one row per (subscription, event number); kept
  for `$events` catch-up.
- `subscription_delivery`: what the delivery worker has sent (`delivered_through`), its
  retry state and heartbeat clock. Workers lock these rows (FOR UPDATE SKIP LOCKED) and
  never the `subscriptions` row order writes update, so a slow receiver never blocks an order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.store.tables import Base, JsonDoc, UTCDateTime


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    #: Parsed filter criteria (app/domain/topics.py `Filter.as_json`).
    filters: Mapped[list[Any]] = mapped_column(JsonDoc, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(2048), nullable=False)
    #: "Name: value" strings, in full (secret: never rendered back to clients).
    headers: Mapped[list[Any]] = mapped_column(JsonDoc, nullable=False)
    content: Mapped[str] = mapped_column(String(16), nullable=False)
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    max_count: Mapped[int] = mapped_column(Integer, nullable=False)
    events_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (Index("ix_subscriptions_status", "tenant_id", "status"),)


class SubscriptionOutboxRow(Base):
    __tablename__ = "subscription_outbox"
    #: Insert order (an identity: no lock, no shared row). Not commit order, and not
    #: needed to be: see app/store/outbox.py `EventNumbering`.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64), nullable=False)
    subscription_id: Mapped[str] = mapped_column(String(64), nullable=False)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    focus_type: Mapped[str] = mapped_column(String(64), nullable=False)
    focus_id: Mapped[str] = mapped_column(String(64), nullable=False)
    focus_version: Mapped[int] = mapped_column(Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    __table_args__ = (
        Index("ix_subscription_outbox_subscription", "tenant_id", "subscription_id", "seq"),
    )


class SubscriptionEventRow(Base):
    __tablename__ = "subscription_events"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    focus_type: Mapped[str] = mapped_column(String(64), nullable=False)
    focus_id: Mapped[str] = mapped_column(String(64), nullable=False)
    focus_version: Mapped[int] = mapped_column(Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SubscriptionDeliveryRow(Base):
    __tablename__ = "subscription_delivery"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    delivered_through: Mapped[int] = mapped_column(BigInteger, nullable=False)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    heartbeat_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))
    __table_args__ = (Index("ix_subscription_delivery_next_attempt_at", "next_attempt_at"),)
