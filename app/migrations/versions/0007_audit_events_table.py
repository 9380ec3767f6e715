"""audit_events: the access audit trail in a narrow append-only table of its own

AuditEvents were stored as FHIR resources: a JSON document in `resources` (7 indexes) plus
about seven search-index rows each, which made the trail cost reads 13 to 61% more CPU
(docs/performance.md, issue 15). Each event is now one row of the facts searches filter on
and a compact JSON of the rest (app/domain/audit_events.py builds the AuditEvent on read);
three indexes. The events stored before move here, their resource and index rows go.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.domain.audit_events import from_fhir

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TYPE = "AuditEvent"
BATCH = 1000
_resources = sa.table(
    "resources",
    sa.column("tenant_id", sa.String),
    sa.column("res_type", sa.String),
    sa.column("id", sa.String),
    sa.column("patient_id", sa.String),
    sa.column("content", sa.JSON),
)
#: Where a stored resource left rows (AuditEvents had no versions, but an older code might).
_OTHER_TABLES = ("resource_versions", "sp_token", "sp_reference", "sp_date", "sp_string")


def upgrade() -> None:
    events = op.create_table(
        "audit_events",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.String(1), nullable=False),
        sa.Column("interaction", sa.String, nullable=False),
        sa.Column("endpoint", sa.String),
        sa.Column("agent_system", sa.String, nullable=False),
        sa.Column("agent", sa.String, nullable=False),
        sa.Column("client", sa.String, nullable=False),
        sa.Column("detail", JSON_DOC, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_audit_events"),
    )
    op.create_index(
        "ix_audit_events_patient", "audit_events", ["tenant_id", "patient_id", "recorded"]
    )
    op.create_index("ix_audit_events_agent", "audit_events", ["tenant_id", "agent", "recorded"])
    op.create_index(
        "ix_audit_events_recorded", "audit_events", ["recorded"], postgresql_using="brin"
    )
    _move_stored_events(events)


def _move_stored_events(events: sa.Table) -> None:
    """Every AuditEvent resource becomes a row (`from_fhir`), in batches by key."""
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    after = ("", "")
    while True:
        batch = conn.execute(
            sa.select(
                _resources.c.tenant_id,
                _resources.c.id,
                _resources.c.patient_id,
                _resources.c.content,
            )
            .where(
                _resources.c.res_type == TYPE,
                sa.tuple_(_resources.c.tenant_id, _resources.c.id) > sa.tuple_(*after),
            )
            .order_by(_resources.c.tenant_id, _resources.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        rows: list[dict[str, Any]] = []
        for tenant_id, _rid, patient_id, content in batch:
            facts = from_fhir(tenant_id, content, patient_id)
            row = {**facts.columns(), "detail": facts.details()}
            if sqlite:  # naive UTC, as the store's UTCDateTime writes it there
                row["recorded"] = facts.recorded.replace(tzinfo=None)
            rows.append(row)
        conn.execute(events.insert(), rows)
        after = (batch[-1][0], batch[-1][1])
    for table in _OTHER_TABLES:
        op.execute(sa.text(f"DELETE FROM {table} WHERE res_type = :t").bindparams(t=TYPE))
    op.execute(sa.text("DELETE FROM resources WHERE res_type = :t").bindparams(t=TYPE))


def downgrade() -> None:
    """The table goes, and with it the events since 0006 (the code before 0007 cannot read
    them, and rebuilding their search-index rows is that code's work, not a revision's)."""
    op.drop_index("ix_audit_events_recorded", table_name="audit_events")
    op.drop_index("ix_audit_events_agent", table_name="audit_events")
    op.drop_index("ix_audit_events_patient", table_name="audit_events")
    op.drop_table("audit_events")
