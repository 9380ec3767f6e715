"""Resource tables. Every table leads with `tenant_id` (DESIGN §9: distributable by tenant).

Only `app/store/repository.py` issues queries against these tables.

- `resources`: the current version of each resource, with hot search columns
  (`patient_id` = the Patient compartment, `status`, `sort_date`) as real indexed columns.
- `resource_versions`: every version ever written (history, vread).
- `sp_token`, `sp_reference`, `sp_date`, `sp_string`: index tables for the other search
  parameters (HAPI's HFJ_SPIDX_* idea), one row per extracted value.
- `conditional_keys`: a unique key per conditional create, so racing `If-None-Exist`
  requests cannot create two resources (HAPI's HFJ_RES_SEARCH_URL idea).
- `audit_events`: the access audit trail, append-only, one narrow row per event
  (app/domain/audit_events.py builds the FHIR AuditEvent on read; docs/decisions.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, MetaData, String, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

#: Stand-in for "no date" so `sort_date` can be NOT NULL and keyset comparisons stay simple.
NO_DATE = datetime(1, 1, 1, tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL (timestamptz) and SQLite (text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ResourceRow(Base):
    __tablename__ = "resources"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(64))
    sort_date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JsonDoc, nullable=False)

    __table_args__ = (
        Index("ix_resources_patient_status", "tenant_id", "res_type", "patient_id", "status", "id"),
        Index("ix_resources_patient_id", "tenant_id", "res_type", "patient_id", "id"),
        Index(
            "ix_resources_patient_updated", "tenant_id", "res_type", "patient_id", "last_updated"
        ),
        Index("ix_resources_status", "tenant_id", "res_type", "status", "id"),
        Index("ix_resources_updated", "tenant_id", "res_type", "last_updated", "id"),
        Index("ix_resources_sort_date", "tenant_id", "res_type", "sort_date", "id"),
    )


class ResourceVersionRow(Base):
    __tablename__ = "resource_versions"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JsonDoc, nullable=False)


class TokenIndexRow(Base):
    __tablename__ = "sp_token"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(255), primary_key=True)
    system: Mapped[str] = mapped_column(String(255), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_sp_token_res", "tenant_id", "res_type", "res_id"),)


class ReferenceIndexRow(Base):
    __tablename__ = "sp_reference"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_sp_reference_res", "tenant_id", "res_type", "res_id"),)


class DateIndexRow(Base):
    __tablename__ = "sp_date"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    low: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    high: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_sp_date_res", "tenant_id", "res_type", "res_id"),)


class StringIndexRow(Base):
    __tablename__ = "sp_string"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    exact: Mapped[str] = mapped_column(String(255), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    __table_args__ = (Index("ix_sp_string_res", "tenant_id", "res_type", "res_id"),)


class ConditionalKeyRow(Base):
    __tablename__ = "conditional_keys"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), nullable=False)
    #: For client mutation keys: a hash of the request payload, so a resubmission after a
    #: cache flush can be told apart from a different request reusing the key.
    payload_hash: Mapped[str | None] = mapped_column(String(64))


class AuditEventRow(Base):
    """One access audit event. The columns are what `AuditEvent?…` searches filter on;
    the rest is `detail` (short-keyed JSON, `AuditFacts.details`). Three indexes: the key
    (read by id, default order: ids are ULIDs, so time-ordered), the patient's events by
    date (the accounting of disclosures, and every PATIENT's view) and a user's events by
    date; plus `recorded` for date-only searches and pruning, a BRIN range summary on
    PostgreSQL (a few pages, nothing per row: rows arrive in `recorded` order)."""

    __tablename__ = "audit_events"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(1), nullable=False)
    outcome: Mapped[str] = mapped_column(String(1), nullable=False)
    #: Unbounded: they come from tokens and request paths, and an event must never be
    #: refused for a long value (a write's event would fail the write).
    interaction: Mapped[str] = mapped_column(String, nullable=False)
    endpoint: Mapped[str | None] = mapped_column(String)
    agent_system: Mapped[str] = mapped_column(String, nullable=False)
    agent: Mapped[str] = mapped_column(String, nullable=False)
    client: Mapped[str] = mapped_column(String, nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDoc, nullable=False)

    __table_args__ = (
        Index("ix_audit_events_patient", "tenant_id", "patient_id", "recorded"),
        Index("ix_audit_events_agent", "tenant_id", "agent", "recorded"),
        Index("ix_audit_events_recorded", "recorded", postgresql_using="brin"),
    )


metadata = Base.metadata
