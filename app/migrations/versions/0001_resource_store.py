"""resource store

Revision ID: 0001
Revises:
Create Date: 2026-11-21 15:46:38.659173
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conditional_keys",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "res_type", "key", name=op.f("pk_conditional_keys")),
    )
    op.create_table(
        "resource_versions",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "res_type", "id", "version_id", name=op.f("pk_resource_versions")
        ),
    )
    op.create_table(
        "resources",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("sort_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "res_type", "id", name=op.f("pk_resources")),
    )
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resources_patient_status",
            ["tenant_id", "res_type", "patient_id", "status", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_resources_patient_updated",
            ["tenant_id", "res_type", "patient_id", "last_updated"],
            unique=False,
        )
        batch_op.create_index(
            "ix_resources_sort_date", ["tenant_id", "res_type", "sort_date", "id"], unique=False
        )
        batch_op.create_index(
            "ix_resources_status", ["tenant_id", "res_type", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_resources_updated", ["tenant_id", "res_type", "last_updated", "id"], unique=False
        )

    op.create_table(
        "sp_date",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("low", sa.DateTime(timezone=True), nullable=False),
        sa.Column("high", sa.DateTime(timezone=True), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "res_type", "param", "low", "high", "res_id", name=op.f("pk_sp_date")
        ),
    )
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.create_index("ix_sp_date_res", ["tenant_id", "res_type", "res_id"], unique=False)

    op.create_table(
        "sp_reference",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("ref_type", sa.String(length=64), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "res_type",
            "param",
            "ref_id",
            "ref_type",
            "res_id",
            name=op.f("pk_sp_reference"),
        ),
    )
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sp_reference_res", ["tenant_id", "res_type", "res_id"], unique=False
        )

    op.create_table(
        "sp_string",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("exact", sa.String(length=255), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "res_type", "param", "value", "exact", "res_id", name=op.f("pk_sp_string")
        ),
    )
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.create_index("ix_sp_string_res", ["tenant_id", "res_type", "res_id"], unique=False)

    op.create_table(
        "sp_token",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("res_type", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "res_type", "param", "code", "system", "res_id", name=op.f("pk_sp_token")
        ),
    )
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.create_index("ix_sp_token_res", ["tenant_id", "res_type", "res_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_token_res")

    op.drop_table("sp_token")
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_string_res")

    op.drop_table("sp_string")
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_reference_res")

    op.drop_table("sp_reference")
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_date_res")

    op.drop_table("sp_date")
    with op.batch_alter_table("resources", schema=None) as batch_op:
        batch_op.drop_index("ix_resources_updated")
        batch_op.drop_index("ix_resources_status")
        batch_op.drop_index("ix_resources_sort_date")
        batch_op.drop_index("ix_resources_patient_updated")
        batch_op.drop_index("ix_resources_patient_status")

    op.drop_table("resources")
    op.drop_table("resource_versions")
    op.drop_table("conditional_keys")
