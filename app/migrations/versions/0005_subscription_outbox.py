"""subscriptions, subscription_events, subscription_delivery: the subscription outbox

Topic-based subscriptions (issue 14, docs/events.md): the delivery configuration and
per-subscription event counter, the outbox rows written with each order change, and the
delivery worker's progress and retry state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("filters", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("headers", JSON_DOC, nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=False),
        sa.Column("events_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_status", "subscriptions", ["tenant_id", "status"])
    op.create_table(
        "subscription_events",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("focus_type", sa.String(64), nullable=False),
        sa.Column("focus_id", sa.String(64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "subscription_id", "event_number", name="pk_subscription_events"
        ),
    )
    op.create_table(
        "subscription_delivery",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("delivered_through", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "subscription_id", name="pk_subscription_delivery"),
    )
    op.create_index(
        "ix_subscription_delivery_next_attempt_at", "subscription_delivery", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("subscription_delivery")
    op.drop_table("subscription_events")
    op.drop_index("ix_subscriptions_status", table_name="subscriptions")
    op.drop_table("subscriptions")
