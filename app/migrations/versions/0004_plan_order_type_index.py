"""sp_token rows for PlanDefinition `order-type`: the order types of a set's templates

The legacy order-set list filters on `orderType` ("sets containing a template of that
type", DESIGN §5). It used to fetch at most 1,000 sets and filter them in Python, so past
1,000 sets the total and the later pages were wrong. The filter is now the indexed token
parameter `PlanDefinition.order-type` (search_parameters.json, derived by
`app.domain.order_types.plan_order_types`). New and updated sets get their rows from the
repository; this revision writes them for the sets stored before it. Idempotent: a set's
`order-type` rows are replaced, not added to.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from app.domain.order_types import plan_order_types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PARAM = "order-type"
BATCH = 1000
_resources = sa.table(
    "resources",
    sa.column("tenant_id", sa.String),
    sa.column("res_type", sa.String),
    sa.column("id", sa.String),
    sa.column("content", sa.JSON),
)
_tokens = sa.table(
    "sp_token",
    sa.column("tenant_id", sa.String),
    sa.column("res_type", sa.String),
    sa.column("param", sa.String),
    sa.column("code", sa.String),
    sa.column("system", sa.String),
    sa.column("res_id", sa.String),
)


def _delete_rows() -> None:
    op.execute(
        _tokens.delete().where(_tokens.c.res_type == "PlanDefinition", _tokens.c.param == PARAM)
    )


def upgrade() -> None:
    conn = op.get_bind()
    _delete_rows()
    plans = conn.execute(
        sa.select(_resources.c.tenant_id, _resources.c.id, _resources.c.content).where(
            _resources.c.res_type == "PlanDefinition"
        )
    ).all()
    rows: list[dict[str, Any]] = []
    for tenant_id, rid, content in plans:
        for code in sorted(plan_order_types(content or {})):
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "res_type": "PlanDefinition",
                    "param": PARAM,
                    "code": code,
                    "system": "",
                    "res_id": rid,
                }
            )
    for start in range(0, len(rows), BATCH):
        conn.execute(_tokens.insert(), rows[start : start + BATCH])


def downgrade() -> None:
    _delete_rows()
