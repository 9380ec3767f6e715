"""Revision 0007 moves the AuditEvents stored as resources into the trail's narrow table.

A database at 0006 gets AuditEvents the way the code before 0007 stored them (a resource
without history, with its search-index rows); after the upgrade each one is served with
the same JSON (`meta.lastUpdated` aside: it becomes `recorded`), found by the same searches,
and no resource or index row of the type is left. One database per backend.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from app.domain.audit_events import AuditFacts, to_fhir
from app.migrate import upgrade
from app.store import Repository
from app.store.search.query import parse_search
from app.store.statements import DT, REF, TOK, R

TENANT = "t-migration-0007"
REVISION = "0007"  # names this module's PostgreSQL database (tests/integration/conftest.py)


def _old_events() -> list[AuditFacts]:
    """A read by a clinician, a legacy search, a failed write with an outcome text."""
    at = datetime(2026, 11, 30, 9, 15, 1, 234000, tzinfo=UTC)
    read = AuditFacts(
        TENANT,
        "audit-01JDREAD",
        at,
        "pat-a",
        "R",
        "0",
        "read",
        None,
        "https://idp.example/",
        "dr-x",
        "ehr-app",
        roles=("CLINICIAN",),
        client_address="10.0.0.7",
        references=("ServiceRequest/sr-1/_history/2",),
        request_id="req-1",
    )
    search = replace(
        read,
        id="audit-01JDSEARCH",
        recorded=at + timedelta(hours=1),
        patient_id="pat-b",
        action="E",
        interaction="search-type",
        endpoint="api-v1:orders.list",
        agent_system="urn:orders-service:token-sub",
        agent="nurse-n",
        client="unknown",
        roles=("NURSE",),
        client_address=None,
        references=("ServiceRequest/sr-2/_history/1", "Task/t-1/_history/3"),
        query="patientId=b&status=active",
        query_type="ServiceRequest",
        request_id=None,
    )
    failed = replace(
        read,
        id="audit-01JDFAIL",
        recorded=at + timedelta(days=1),
        action="U",
        outcome="4",
        interaction="operation",
        endpoint="fhir:$activate",
        outcome_desc="ORDER_TERMINAL_STATE",
    )
    return [read, search, failed]


def _body(facts: AuditFacts) -> dict[str, Any]:
    """What the code before 0007 gave `Repository.create` (it stamped id and meta)."""
    doc = to_fhir(facts)
    doc.pop("id")
    doc["meta"] = {"profile": doc["meta"]["profile"]}
    return doc


def _search(engine: Engine, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        page = Repository(conn, TENANT, read_only=True).search(
            parse_search("AuditEvent", [*params, ("_count", "100")])
        )
    return [r.content for r in page.resources]


def _rows_of_type(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(
                select(func.count()).select_from(t).where(t.c.res_type == "AuditEvent")
            ).scalar_one()
            for t in (R, TOK, REF, DT)
        )


def test_0007_moves_stored_audit_events_into_the_narrow_table(engine: Engine) -> None:
    upgrade(engine, "0006")
    events = _old_events()
    before: dict[str, dict[str, Any]] = {}
    with engine.begin() as conn:
        repo = Repository(conn, TENANT)
        for facts in events:
            stored = repo.create("AuditEvent", facts.id, _body(facts), versioned=False)
            before[facts.id] = stored.content
        repo.flush()
    assert _rows_of_type(engine) > len(events), "resource rows and their index rows"

    upgrade(engine, "head")
    assert _rows_of_type(engine) == 0

    after = {doc["id"]: doc for doc in _search(engine, [])}
    assert set(after) == set(before)
    for rid, doc in before.items():
        moved = after[rid]
        assert moved["meta"]["lastUpdated"] == doc["recorded"]
        for d in (moved, doc):
            d["meta"].pop("lastUpdated")
        assert moved == doc
    with engine.connect() as conn:
        repo = Repository(conn, TENANT, read_only=True)
        read = repo.read("AuditEvent", "audit-01JDFAIL")
        # A reference to a moved event still resolves (reference checks ask `existing`).
        refs = repo.existing([("AuditEvent", "audit-01JDREAD"), ("AuditEvent", "gone")])
    assert read is not None and read.content["outcomeDesc"] == "ORDER_TERMINAL_STATE"
    assert refs == {("AuditEvent", "audit-01JDREAD")}

    def ids(*params: tuple[str, str]) -> list[str]:
        return sorted(doc["id"] for doc in _search(engine, list(params)))

    assert ids(("patient", "pat-a")) == ["audit-01JDFAIL", "audit-01JDREAD"]
    assert ids(("agent", "nurse-n")) == ["audit-01JDSEARCH"]
    assert ids(("agent", "https://idp.example/|dr-x"), ("date", "2026-11-30")) == ["audit-01JDREAD"]
    assert ids(("agent", "urn:orders-service:client|ehr-app")) == [
        "audit-01JDFAIL",
        "audit-01JDREAD",
    ]
    assert ids(("subtype", "api-v1:orders.list")) == ["audit-01JDSEARCH"]
    assert ids(("outcome", "4"), ("action", "U")) == ["audit-01JDFAIL"]

    upgrade(engine, "head")  # already at head: nothing runs, nothing doubles
    assert len(_search(engine, [])) == len(events)
