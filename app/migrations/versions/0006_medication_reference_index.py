"""sp_reference rows for MedicationRequest `medication`: the stored Medication an order names

Medication became a stored type (issue 12): `MedicationRequest?medication=Medication/<id>`
finds the orders naming a formulary entry, and `_include=MedicationRequest:medication` (the
CDS Hooks `medications` prefetch) returns them with their orders. New and updated orders get
their rows from the repository; this revision writes them for the orders stored before it,
with the repository's own extraction. Idempotent: the `medication` rows are replaced.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from app.store.search.definitions import for_type
from app.store.search.extract import extract

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TYPE = "MedicationRequest"
PARAM = "medication"
BATCH = 1000
_resources = sa.table(
    "resources",
    sa.column("tenant_id", sa.String),
    sa.column("res_type", sa.String),
    sa.column("id", sa.String),
    sa.column("content", sa.JSON),
)
_references = sa.table(
    "sp_reference",
    sa.column("tenant_id", sa.String),
    sa.column("res_type", sa.String),
    sa.column("param", sa.String),
    sa.column("ref_type", sa.String),
    sa.column("ref_id", sa.String),
    sa.column("res_id", sa.String),
)


def _delete_rows() -> None:
    op.execute(
        _references.delete().where(_references.c.res_type == TYPE, _references.c.param == PARAM)
    )


def upgrade() -> None:
    conn = op.get_bind()
    _delete_rows()
    definition = for_type(TYPE)
    orders = conn.execute(
        sa.select(_resources.c.tenant_id, _resources.c.id, _resources.c.content).where(
            _resources.c.res_type == TYPE
        ),
        execution_options={"stream_results": True},  # this statement only, not the connection
    )
    rows: list[dict[str, Any]] = []
    for batch in orders.partitions(BATCH):
        for tenant_id, rid, content in batch:
            if not isinstance(content, dict) or "medicationReference" not in content:
                continue
            for param, ref_type, ref_id in extract(definition, content).references:
                if param == PARAM:
                    rows.append(
                        {
                            "tenant_id": tenant_id,
                            "res_type": TYPE,
                            "param": PARAM,
                            "ref_type": ref_type,
                            "ref_id": ref_id,
                            "res_id": rid,
                        }
                    )
    for start in range(0, len(rows), BATCH):
        conn.execute(_references.insert(), rows[start : start + BATCH])


def downgrade() -> None:
    _delete_rows()
