"""The read-event buffer's documented bounds (docs/operations.md "Loss window"): while the
database is unreachable records wait, at most `max_buffered`, the oldest dropped beyond;
when it is back they are written; a clean close writes what is left."""

from __future__ import annotations

import base64
import dataclasses
import os
from datetime import UTC, datetime
from typing import Any

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


def test_values_that_copy_must_escape_are_stored_as_given(app: Flask, tenant: str) -> None:
    """The flusher writes a batch as one `COPY` text payload (PostgreSQL) or one executemany
    (SQLite): a tab, newline, carriage return, backslash or quote in a token's subject,
    client, the query or the request id comes back as it was; a NUL (which no PostgreSQL
    text holds) as U+FFFD, without failing the batch around it."""
    with app.app_context():
        database = get_runtime().database
    sub = "odd\tsub\\with\nnewline\r"
    who = Principal(sub, tenant, frozenset({"NURSE", "CLINICIAN"}), frozenset({tenant}))
    who = dataclasses.replace(who, client_id='client "quoted" \\N')
    query = 'patient=p1&note=a\\b\t"c"\nd'
    ctx = AccessContext(
        face="fhir",
        sink=None,
        request_id="req\\1",
        client_address="10.0.0.1",
        interaction="search-type",
        resource_type="Task",
        query=query,
    )
    now = datetime.now(UTC)
    plain = AccessRecord(tenant, "pat-plain", who, ctx, "E", "0", now, ["Task/t-1/_history/2"])
    nul = AccessRecord(
        tenant,
        "pat-nul",
        who,
        dataclasses.replace(ctx, request_id="r\0id"),
        "E",
        "0",
        now,
        ["Task/t-2/_history/1"],
    )
    trail = AuditTrail(database, flush_seconds=60)
    trail._pid = os.getpid()  # no background thread: the test drives flush
    trail.submit([plain, nul])
    assert trail.flush() == 2
    with database.connect() as conn:
        page = Repository(conn, tenant).search(
            parse_search("AuditEvent", [("patient", "pat-plain,pat-nul"), ("_count", "10")])
        )
    events = {r.patient_id: r.content for r in page.resources}
    assert set(events) == {"pat-plain", "pat-nul"}
    event = events["pat-plain"]
    user, client = event["agent"][0], event["agent"][1]
    assert user["who"]["identifier"]["value"] == sub
    assert [r["coding"][0]["code"] for r in user["role"]] == ["CLINICIAN", "NURSE"]
    assert client["who"]["identifier"]["value"] == 'client "quoted" \\N'
    entities = {e["role"]["code"] if "role" in e else "rid": e for e in event["entity"]}
    assert base64.b64decode(entities["24"]["query"]).decode() == query
    assert entities["4"]["what"]["reference"] == "Task/t-1/_history/2"
    assert entities["rid"]["what"]["identifier"]["value"] == "req\\1"
    stored_rid = next(
        e["what"]["identifier"]["value"] for e in events["pat-nul"]["entity"] if "role" not in e
    )
    assert stored_rid == "r\ufffdid"  # on SQLite too: the same event on either store


def test_a_flush_writes_what_was_buffered_when_it_began(app: Flask, tenant: str) -> None:
    """Reads served while a flush writes wait for the next pass: a flush that kept taking
    them wrote, under load, a transaction per handful of events (docs/performance.md,
    session 7)."""
    with app.app_context():
        database = get_runtime().database

    class Busy(AuditTrail):
        def _write(self, batch: list[Any]) -> int:
            written = super()._write(batch)
            if not arrived:  # reads served meanwhile
                arrived.extend(_records(tenant, 2, "busy-late"))
                self.submit(arrived)
            return written

    arrived: list[AccessRecord] = []
    trail = Busy(database, flush_seconds=60)
    trail._pid = os.getpid()  # no background thread: the test drives flush
    trail.submit(_records(tenant, 3, "busy-early"))
    assert trail.flush() == 3
    assert trail.pending() == 2
    assert len(_stored(database, tenant, "busy-late")) == 0
    assert trail.flush() == 2
    assert trail.pending() == 0
    assert len(_stored(database, tenant, "busy-late")) == 2


def _with_bad_patient(tenant: str, n: int, sub: str, bad: set[int]) -> list[AccessRecord]:
    """`n` records, those in `bad` naming a patient id longer than the column's 64
    characters: PostgreSQL refuses that row as data (22001), the others are fine."""
    records = _records(tenant, n, sub)
    for i in bad:
        records[i].patient_id = "p" * 65
    return records


def test_an_event_the_database_refuses_is_dropped_alone(pg_app: Flask, tenant: str) -> None:
    """A refused row used to fail its whole batch on every pass, until the buffer's bound
    dropped it together with the good events around it. Now the batch is split until the
    refused events are alone: only they are dropped."""
    with pg_app.app_context():
        database = get_runtime().database
    trail = AuditTrail(database, flush_seconds=60)
    trail._pid = os.getpid()  # no background thread: the test drives flush
    trail.submit(_with_bad_patient(tenant, 9, "refused-sub", bad={2, 7}))
    assert trail.flush() == 7
    assert trail.pending() == 0
    assert _stored(database, tenant, "refused-sub") == sorted(
        f"Patient/pat-{i}" for i in range(9) if i not in (2, 7)
    )


def test_an_outage_while_splitting_keeps_only_what_was_not_written(
    pg_app: Flask, tenant: str
) -> None:
    """The database goes away after the first half of a split batch is committed: the
    other half waits in the buffer, and the committed half is not written twice."""
    with pg_app.app_context():
        database = get_runtime().database
    unreachable = Database(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))

    class GoesAway(AuditTrail):
        def _write(self, batch: list[Any]) -> int:
            written = super()._write(batch)
            self._database = unreachable  # after the first commit
            return written

    trail = GoesAway(database, flush_seconds=60)
    trail._pid = os.getpid()
    trail.submit(_with_bad_patient(tenant, 4, "split-sub", bad={3}))
    assert trail.flush() == 2, "the first half, then the outage"
    assert trail.pending() == 2
    trail._database = database  # back; the plain class from here on
    trail.__class__ = AuditTrail
    assert trail.flush() == 1, "pat-2 written, the refused one dropped"
    assert trail.pending() == 0
    assert _stored(database, tenant, "split-sub") == [f"Patient/pat-{i}" for i in range(3)]


def test_a_refused_event_is_logged_without_its_values(
    pg_app: Flask, tenant: str, caplog: Any
) -> None:
    """The operator learns why (SQLSTATE and message), not the refused patient id."""
    with pg_app.app_context():
        database = get_runtime().database
    trail = AuditTrail(database, flush_seconds=60)
    trail._pid = os.getpid()
    trail.submit(_with_bad_patient(tenant, 1, "logged-sub", bad={0}))
    with caplog.at_level("ERROR", logger="app.audit"):
        assert trail.flush() == 0
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "22001" in line and "too long" in line
    assert "p" * 65 not in line
