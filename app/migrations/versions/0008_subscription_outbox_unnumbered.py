"""subscription_outbox: un-numbered events, numbered after the order commits

Issue 14's throughput target: numbering events in the order's transaction made every
writer in a tenant with a subscription queue on that subscription's counter row from its
last statement to its commit (the WAL flush included). Order writes now insert un-numbered
rows here, touching no shared row, and the numbering step (the delivery worker, `$status`,
`$events`) moves them to `subscription_events` with their numbers (docs/events.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("focus_type", sa.String(64), nullable=False),
        sa.Column("focus_id", sa.String(64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_subscription_outbox"),
    )
    op.create_index(
        "ix_subscription_outbox_subscription",
        "subscription_outbox",
        ["tenant_id", "subscription_id", "seq"],
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_outbox_subscription", table_name="subscription_outbox")
    op.drop_table("subscription_outbox")
