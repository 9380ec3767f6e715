"""conditional_keys.payload_hash: tell a replay from a changed payload without Redis

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conditional_keys") as batch:
        batch.add_column(sa.Column("payload_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conditional_keys") as batch:
        batch.drop_column("payload_hash")
