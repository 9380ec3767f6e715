"""The read-event buffer's documented bounds (docs/operations.md "Loss window"): while the
database is unreachable records wait, at most `max_buffered`, the oldest dropped beyond;
when it is back they are written; a clean close writes what is left."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import create_engine

from app.auth import Principal
from app.db import Database
from app.runtime import get_runtime
from app.services.audit import AccessContext, AccessRecord
from app.services.audit_trail import AuditTrail
from app.store import Repository
from app.store.search.query import parse_search


def _records(tenant: str, n: int, sub: str) -> list[AccessRecord]:
    who = Principal(sub, tenant, frozenset({"CLINICIAN"}), frozenset({tenant}))
    ctx = AccessContext(face="fhir", sink=None, interaction="read", resource_type="Task")
    now = datetime.now(UTC)
    return [
        AccessRecord(tenant, f"pat-{i}", who, ctx, "R", "0", now, [f"Task/t-{i}/_history/1"])
        for i in range(n)
    ]


def _stored(database: Database, tenant: str, sub: str) -> list[str]:
    with database.connect() as conn:
        page = Repository(conn, tenant).search(
            parse_search("AuditEvent", [("agent", sub), ("_count", "100")])
        )
    return sorted(r.content["entity"][0]["what"]["reference"] for r in page.resources)


def test_an_outage_keeps_the_newest_records_up_to_the_bound_then_writes_them(
    app: Flask, tenant: str
) -> None:
    with app.app_context():
        database = get_runtime().database
    unreachable = Database(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    trail = AuditTrail(unreachable, flush_seconds=60, max_buffered=5)
    trail._pid = os.getpid()  # no background thread: the test drives flush
    trail.submit(_records(tenant, 8, "outage-sub"))
    assert trail.pending() == 5, "the oldest three were dropped"
    assert trail.flush() == 0
    assert trail.pending() == 5, "a failed write keeps the records"
    trail._database = database  # the database is back
    trail.close()
    assert trail.pending() == 0
    assert _stored(database, tenant, "outage-sub") == [f"Patient/pat-{i}" for i in range(3, 8)]
