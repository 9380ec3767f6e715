"""Deferred inserts and index diffs in the repository, through real units of work (both
backends).

`Repository.create()` / `update()` collect their rows and write one multi-row INSERT per
table before the next statement or at commit; `update()` diffs the search-index rows against
the version it replaces when this unit of work read or wrote exactly that version. These
tests pin what that must never change: a unit of work reads its own writes, the index rows
after any update are exactly those of the new content, database errors raised by a deferred
insert still map to the right client error, and nothing half-written survives.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func, select

from app.auth import Principal
from app.domain.ids import new_id
from app.errors import ValidationFailed, VersionConflict
from app.runtime import get_runtime
from app.services.unit_of_work import UnitOfWork
from app.store import Repository
from app.store.search import definitions
from app.store.search.extract import extract
from app.store.search.query import parse_search
from app.store.statements import (
    INDEX_COLUMNS,
    INDEX_TABLES,
    PG_FLUSH,
    PG_FLUSH_AUDITED,
    R,
    V,
)
from tests.fhir_data import LOINC, patient, plan_definition, service_request

RES, VER = R, V
INDEX = {str(t.name): t for t in INDEX_TABLES}
#: The value columns of each index table, in the order IndexValues' tuples use.
VALUE_COLUMNS = {str(t.name): cols for t, cols in INDEX_COLUMNS.items()}
SR = "ServiceRequest"


class Rollback(Exception):
    """Raised at the end of a with block to make the unit of work roll back."""


# --------------------------------------------------------------------------- helpers
def _uow(tenant: str, *, read_only: bool = False) -> UnitOfWork:
    who = Principal("deferred-test", tenant, frozenset({"CLINICIAN", "ADMIN"}), frozenset({tenant}))
    return UnitOfWork(get_runtime().database, who, read_only=read_only)


def _order(code: str, pid: str = "p-deferred", **extra: Any) -> dict[str, Any]:
    return service_request(pid, code={"coding": [{"system": LOINC, "code": code}]}, **extra)


def _create(app: Flask, tenant: str, content: dict[str, Any], rtype: str = SR) -> str:
    rid = new_id(rtype)
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create(rtype, rid, content)
    return rid


def _index_rows(app: Flask, tenant: str, rtype: str, rid: str) -> dict[str, set[tuple[Any, ...]]]:
    """Every index row of one resource, per table, without the key columns."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    with app.app_context(), get_runtime().engine.connect() as conn:
        for name, table in INDEX.items():
            cols = [table.c[name] for name in VALUE_COLUMNS[name]]
            rows = conn.execute(
                select(*cols).where(
                    table.c.tenant_id == tenant, table.c.res_type == rtype, table.c.res_id == rid
                )
            ).all()
            out[name] = {tuple(r) for r in rows}
    return out


def _stored(app: Flask, tenant: str, rtype: str, rid: str) -> tuple[list[Any], list[Any]]:
    """(resources rows, resource_versions rows) of one resource, straight from the tables."""
    with app.app_context(), get_runtime().engine.connect() as conn:
        res = conn.execute(
            select(RES.c.version_id, RES.c.content).where(
                RES.c.tenant_id == tenant, RES.c.res_type == rtype, RES.c.id == rid
            )
        ).all()
        ver = conn.execute(
            select(VER.c.version_id, VER.c.content)
            .where(VER.c.tenant_id == tenant, VER.c.res_type == rtype, VER.c.id == rid)
            .order_by(VER.c.version_id)
        ).all()
    return list(res), list(ver)


def _search_ids(repo: Repository, rtype: str, params: list[tuple[str, str]]) -> set[str]:
    return {r.id for r in repo.search(parse_search(rtype, params)).resources}


def _found(app: Flask, tenant: str, rtype: str, params: list[tuple[str, str]]) -> set[str]:
    with app.app_context(), _uow(tenant, read_only=True) as uow:
        return _search_ids(uow.repo, rtype, params)


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement (whitespace-normalised) and its parameters the engine sends while
    the block runs."""
    seen: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        # An executemany's parameters are one set per row; count them as rows below.
        seen.append((" ".join(statement.split()), params if many else [params]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _deletes(statements: list[tuple[str, Any]]) -> list[str]:
    return [s for s, _ in statements if s.upper().startswith("DELETE")]


#: The flush statement, without and with the audit table (a write's own AuditEvents).
FLUSH_SQL = {" ".join(flush.sql.split()) for flush in (PG_FLUSH, PG_FLUSH_AUDITED)}


def _flushed_rows(params: Any) -> dict[str, int]:
    """Rows per table in one execution of PostgreSQL's single flush statement (its one
    parameter is a JSON document of rows keyed by table name)."""
    return {name: len(rows) for name, rows in json.loads(params[0]).items()}


def _inserted(statements: list[tuple[str, Any]]) -> dict[str, int]:
    """Rows inserted per table by the statements, whichever write path sent them."""
    counts: dict[str, int] = defaultdict(int)
    for sql, params in statements:
        if sql in FLUSH_SQL:
            for name, n in _flushed_rows(params[0]).items():
                counts[name] += n
        elif sql.upper().startswith("INSERT INTO "):
            name = sql.split()[2].lower()
            counts[name] += len(params)
    return {name: n for name, n in counts.items() if n}


def _index_inserts(statements: list[tuple[str, Any]]) -> dict[str, int]:
    return {name: n for name, n in _inserted(statements).items() if name.startswith("sp_")}


# --------------------------------------------------------------------------- 1. read your writes
def test_a_unit_of_work_reads_its_own_deferred_writes(app: Flask, tenant: str) -> None:
    rid = new_id(SR)
    with app.app_context(), pytest.raises(Rollback), _uow(tenant) as uow:
        repo = uow.repo
        repo.create(SR, rid, _order("ryw-1", pid="p-ryw"))
        assert _search_ids(repo, SR, [("patient", "p-ryw")]) == {rid}, (
            "search by patient must see an uncommitted create of this unit of work"
        )
        assert _search_ids(repo, SR, [("code", f"{LOINC}|ryw-1")]) == {rid}, (
            "search by code (sp_token) must see an uncommitted create of this unit of work"
        )
        assert _search_ids(repo, SR, [("code", "ryw-1")]) == {rid}
        found = repo.read(SR, rid)
        assert found is not None and found.version_id == 1
        assert found.content["code"]["coding"][0]["code"] == "ryw-1"
        # A second create after the first flush: both visible, also to a count.
        rid2 = new_id(SR)
        repo.create(SR, rid2, _order("ryw-2", pid="p-ryw"))
        assert _search_ids(repo, SR, [("patient", "p-ryw")]) == {rid, rid2}
        summary = repo.search(parse_search(SR, [("patient", "p-ryw"), ("_summary", "count")]))
        assert summary.total == 2
        assert repo.existing([(SR, rid), (SR, rid2), (SR, "nope")]) == {(SR, rid), (SR, rid2)}
        raise Rollback
    # Nothing was committed: what the searches saw came from this transaction alone.
    assert _stored(app, tenant, SR, rid) == ([], [])
    assert _found(app, tenant, SR, [("patient", "p-ryw")]) == set()
    assert _index_rows(app, tenant, SR, rid) == {name: set() for name in INDEX}


def test_a_create_is_written_at_commit_without_any_later_statement(app: Flask, tenant: str) -> None:
    """The last deferred rows of a unit of work (nothing reads after them) reach the tables."""
    rid = new_id(SR)
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create(SR, rid, _order("at-commit", pid="p-commit"))
    res, ver = _stored(app, tenant, SR, rid)
    assert [r.version_id for r in res] == [1] and [v.version_id for v in ver] == [1]
    assert _found(app, tenant, SR, [("code", "at-commit")]) == {rid}
    assert _found(app, tenant, SR, [("patient", "p-commit")]) == {rid}
    assert ("code", LOINC, "at-commit") in _index_rows(app, tenant, SR, rid)["sp_token"]


# --------------------------------------------------------------------------- 2. index diff
def test_an_update_after_a_read_replaces_the_changed_index_rows_only(
    app: Flask, tenant: str
) -> None:
    rid = _create(app, tenant, _order("code-a"))
    before = _index_rows(app, tenant, SR, rid)
    assert ("code", LOINC, "code-a") in before["sp_token"]
    engine: Engine = app.extensions["orders"].engine

    with app.app_context(), _statements(engine) as sql, _uow(tenant) as uow:
        current = uow.repo.read(SR, rid)
        assert current is not None
        uow.repo.update(SR, rid, _order("code-b"), expected_version=current.version_id)
    after = _index_rows(app, tenant, SR, rid)
    assert after["sp_token"] == (before["sp_token"] - {("code", LOINC, "code-a")}) | {
        ("code", LOINC, "code-b")
    }
    for name in ("sp_reference", "sp_date", "sp_string"):
        assert after[name] == before[name], f"{name} rows changed though no value of it did"
    deletes = _deletes(sql)
    assert deletes and all("sp_token" in s for s in deletes), (
        f"only the removed sp_token row may be deleted after a read, got {deletes}"
    )
    assert _found(app, tenant, SR, [("code", "code-a")]) == set()
    assert _found(app, tenant, SR, [("code", f"{LOINC}|code-b")]) == {rid}

    # An update that only changes `note`: no index row is touched at all.
    with app.app_context(), _statements(engine) as sql, _uow(tenant) as uow:
        current = uow.repo.read(SR, rid)
        assert current is not None and current.version_id == 2
        uow.repo.update(
            SR, rid, {**current.content, "note": [{"text": "fasting"}]}, expected_version=2
        )
    assert _index_rows(app, tenant, SR, rid) == after, "a note-only update changed index rows"
    assert _deletes(sql) == [], f"a note-only update after a read issued DELETEs: {_deletes(sql)}"
    assert _index_inserts(sql) == {}, f"a note-only update inserted index rows: {sql}"
    res, ver = _stored(app, tenant, SR, rid)
    assert res[0].version_id == 3 and res[0].content["note"] == [{"text": "fasting"}]
    assert [v.version_id for v in ver] == [1, 2, 3]


def test_diffed_updates_handle_dates_references_and_strings(app: Flask, tenant: str) -> None:
    """Every index table through the diff path: a changed date, reference and string leave
    exactly the rows a fresh create of the new content would have."""
    rid = _create(
        app,
        tenant,
        _order(
            "diff",
            authoredOn="2026-01-02T10:00:00Z",
            requester={"reference": "Practitioner/dr-old"},
        ),
    )
    new = _order(
        "diff",
        authoredOn="2026-03-04T05:06:07Z",
        requester={"reference": "Practitioner/dr-new"},
    )
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.read(SR, rid) is not None
        uow.repo.update(SR, rid, new, expected_version=1)
    twin = _create(app, tenant, new)
    assert _index_rows(app, tenant, SR, rid) == _index_rows(app, tenant, SR, twin), (
        "after a diffed update the index rows must equal those of a fresh create"
    )
    assert _found(app, tenant, SR, [("authored", "2026-01-02")]) == set(), (
        "the replaced authoredOn date row must be deleted"
    )
    assert _found(app, tenant, SR, [("authored", "2026-03-04")]) == {rid, twin}
    assert _found(app, tenant, SR, [("requester", "Practitioner/dr-old")]) == set()
    assert _found(app, tenant, SR, [("requester", "Practitioner/dr-new")]) == {rid, twin}

    pid = new_id("Patient")
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create("Patient", pid, patient(name=[{"family": "Oldname"}]))
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.read("Patient", pid) is not None
        uow.repo.update(
            "Patient",
            pid,
            patient(name=[{"family": "Newname"}], birthDate="1980-05-06"),
            expected_version=1,
        )
    assert _found(app, tenant, "Patient", [("name", "oldname")]) == set()
    assert _found(app, tenant, "Patient", [("name", "newname")]) == {pid}
    assert _found(app, tenant, "Patient", [("birthdate", "1970-01-01")]) == set()
    assert _found(app, tenant, "Patient", [("birthdate", "1980-05-06")]) == {pid}


def test_create_then_updates_in_one_unit_of_work(app: Flask, tenant: str) -> None:
    """The diff base may be a version this unit of work wrote and has not flushed yet."""
    rid = new_id(SR)
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create(SR, rid, _order("same-1"))
        uow.repo.update(SR, rid, _order("same-2"), expected_version=1)
        uow.repo.update(SR, rid, _order("same-1", priority="urgent"), expected_version=2)
        assert _search_ids(uow.repo, SR, [("code", "same-2")]) == set()
        assert _search_ids(uow.repo, SR, [("code", "same-1")]) == {rid}
    twin = _create(app, tenant, _order("same-1", priority="urgent"))
    assert _index_rows(app, tenant, SR, rid) == _index_rows(app, tenant, SR, twin)
    res, ver = _stored(app, tenant, SR, rid)
    assert res[0].version_id == 3 and [v.version_id for v in ver] == [1, 2, 3]


# --------------------------------------------------------------------------- 3. fallback
def test_an_update_without_a_read_replaces_all_index_rows(app: Flask, tenant: str) -> None:
    rid = _create(
        app, tenant, _order("fb-a", requester={"reference": "Practitioner/dr-a"}, priority="stat")
    )
    new = _order("fb-b", authoredOn="2026-02-03T00:00:00Z")
    with app.app_context(), get_runtime().engine.connect() as conn, conn.begin():
        repo = Repository(conn, tenant)  # fresh: it has read nothing
        repo.update(SR, rid, new, expected_version=1)
        repo.flush()  # outside a UnitOfWork the caller writes the deferred rows itself
    rows = _index_rows(app, tenant, SR, rid)
    assert ("code", LOINC, "fb-a") not in rows["sp_token"]
    assert ("code", LOINC, "fb-b") in rows["sp_token"]
    assert ("priority", "", "stat") not in rows["sp_token"]
    assert not any(r[0] == "requester" for r in rows["sp_reference"])
    twin = _create(app, tenant, new)
    assert rows == _index_rows(app, tenant, SR, twin), (
        "after an update without a read the index rows must equal those of a fresh create"
    )
    assert _found(app, tenant, SR, [("code", "fb-a")]) == set()
    assert _found(app, tenant, SR, [("code", "fb-b")]) == {rid, twin}
    assert _found(app, tenant, SR, [("authored", "2026-01-02")]) == set()

    # Through a unit of work too, for a type without reference parameters (Patient).
    pid = new_id("Patient")
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create("Patient", pid, patient(name=[{"family": "Before"}]))
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.update("Patient", pid, patient(name=[{"family": "After"}]), expected_version=1)
    assert _found(app, tenant, "Patient", [("name", "before")]) == set()
    assert _found(app, tenant, "Patient", [("name", "after")]) == {pid}


# --------------------------------------------------------------------------- 4. id clash
def test_a_clashing_deferred_create_is_a_conflict_at_exit_and_writes_nothing(
    app: Flask, tenant: str
) -> None:
    rid = new_id(SR)
    with app.app_context(), _uow(tenant) as uow:
        uow.repo.create(SR, rid, _order("first"))
    before = _index_rows(app, tenant, SR, rid)
    with app.app_context(), pytest.raises(VersionConflict), _uow(tenant) as uow:
        uow.repo.create(SR, rid, _order("second", pid="p-other"))
        uow.repo.create(SR, new_id(SR), _order("bystander"))
    res, ver = _stored(app, tenant, SR, rid)
    assert [(r.version_id, r.content["code"]["coding"][0]["code"]) for r in res] == [(1, "first")]
    assert [(v.version_id, v.content["code"]["coding"][0]["code"]) for v in ver] == [(1, "first")]
    assert _index_rows(app, tenant, SR, rid) == before
    assert _found(app, tenant, SR, [("code", "second")]) == set()
    assert _found(app, tenant, SR, [("code", "bystander")]) == set(), (
        "the whole unit of work must roll back, not only the clashing row"
    )


def test_a_clash_surfacing_inside_the_block_is_a_conflict_too(app: Flask, tenant: str) -> None:
    """The next statement flushes the deferred rows: the IntegrityError is raised inside the
    with block and must still become VersionConflict."""
    rid = _create(app, tenant, _order("first"))
    with app.app_context(), pytest.raises(VersionConflict), _uow(tenant) as uow:
        uow.repo.create(SR, rid, _order("second"))
        uow.repo.read(SR, rid)
    res, ver = _stored(app, tenant, SR, rid)
    assert len(res) == 1 and len(ver) == 1
    assert res[0].content["code"]["coding"][0]["code"] == "first"


# --------------------------------------------------------------------------- 5. NUL (PostgreSQL)
@pytest.mark.parametrize(
    "where",
    ["note", "code"],
)
def test_a_nul_character_is_a_validation_error_at_exit_on_postgresql(
    pg_app: Flask, tenant: str, where: str
) -> None:
    app = pg_app  # SQLite stores NUL characters: the database error exists on PostgreSQL only
    rid = new_id(SR)
    content = _order("nul\x00code") if where == "code" else _order("ok", note=[{"text": "a\x00b"}])
    with app.app_context(), pytest.raises(ValidationFailed), _uow(tenant) as uow:
        uow.repo.create(SR, rid, content)
        other = new_id(SR)
        uow.repo.create(SR, other, _order("innocent"))
    assert _stored(app, tenant, SR, rid) == ([], [])
    assert _index_rows(app, tenant, SR, rid) == {name: set() for name in INDEX}
    assert _found(app, tenant, SR, [("code", "innocent")]) == set()


def test_a_nul_character_in_an_update_is_a_validation_error_on_postgresql(
    pg_app: Flask, tenant: str
) -> None:
    app = pg_app
    rid = _create(app, tenant, _order("clean"))
    before = _index_rows(app, tenant, SR, rid)
    with app.app_context(), pytest.raises(ValidationFailed), _uow(tenant) as uow:
        current = uow.repo.read(SR, rid)
        assert current is not None
        uow.repo.update(SR, rid, _order("dirty\x00"), expected_version=1)
    res, ver = _stored(app, tenant, SR, rid)
    assert [r.version_id for r in res] == [1] and [v.version_id for v in ver] == [1]
    assert _index_rows(app, tenant, SR, rid) == before


# --------------------------------------------------------------------------- 6. read-only
def test_a_read_only_unit_of_work_refuses_every_write(app: Flask, tenant: str) -> None:
    rid = _create(app, tenant, _order("ro"))
    new_rid = new_id(SR)
    with app.app_context(), _uow(tenant, read_only=True) as uow:
        current = uow.repo.read(SR, rid)
        assert current is not None
        with pytest.raises(RuntimeError):
            uow.repo.create(SR, new_rid, _order("ro-new"))
        with pytest.raises(RuntimeError):
            uow.repo.update(SR, rid, _order("ro-changed"), expected_version=1)
        with pytest.raises(RuntimeError):
            uow.repo.claim_conditional_key(SR, "ro-key", new_rid)
        with pytest.raises(RuntimeError):
            uow.repo.reassign_conditional_key(SR, "ro-key", new_rid)
        # Reads still work after the refusals, and the block ends normally (commit path).
        assert _search_ids(uow.repo, SR, [("code", "ro")]) == {rid}
    assert _stored(app, tenant, SR, new_rid) == ([], [])
    res, ver = _stored(app, tenant, SR, rid)
    assert [r.version_id for r in res] == [1] and len(ver) == 1
    assert res[0].content["code"]["coding"][0]["code"] == "ro"
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.key_owner(SR, "ro-key") is None


# --------------------------------------------------------------------------- 7. conditional keys
def test_claim_conditional_key_is_first_come_first_served(app: Flask, tenant: str) -> None:
    first, second = new_id(SR), new_id(SR)
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.claim_conditional_key(SR, "k-1", first, "hash-1") is True
        assert uow.repo.claim_conditional_key(SR, "k-1", second, "hash-2") is False, (
            "a second claim of a key in the same transaction must lose"
        )
        assert uow.repo.key_owner(SR, "k-1") == (first, "hash-1")
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.claim_conditional_key(SR, "k-1", second, "hash-2") is False, (
            "a claim of a committed key must lose"
        )
        assert uow.repo.claim_conditional_key(SR, "k-2", second) is True
        # A lost claim leaves the transaction usable (no aborted transaction on PostgreSQL).
        uow.repo.create(SR, second, _order("after-claim"))
        assert uow.repo.read(SR, second) is not None
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.key_owner(SR, "k-1") == (first, "hash-1")
        assert uow.repo.key_owner(SR, "k-2") == (second, None)
        assert uow.repo.read(SR, second) is not None
    # Keys are per tenant and per type.
    with app.app_context(), _uow(f"{tenant}-other") as uow:
        assert uow.repo.claim_conditional_key(SR, "k-1", second) is True
    with app.app_context(), _uow(tenant) as uow:
        assert uow.repo.claim_conditional_key("MedicationRequest", "k-1", second) is True


def test_row_counts_match_after_mixed_deferred_writes(app: Flask, tenant: str) -> None:
    """Many creates and updates in one unit of work: one version row per version written."""
    ids = [new_id(SR) for _ in range(5)]
    with app.app_context(), _uow(tenant) as uow:
        for n, rid in enumerate(ids):
            uow.repo.create(SR, rid, _order(f"mix-{n}", pid="p-mix"))
        for rid in ids[:3]:
            uow.repo.update(SR, rid, _order("mix-updated", pid="p-mix"), expected_version=1)
    with app.app_context(), get_runtime().engine.connect() as conn:
        versions = conn.execute(
            select(func.count()).select_from(VER).where(VER.c.tenant_id == tenant)
        ).scalar_one()
    assert versions == 8
    assert _found(app, tenant, SR, [("code", "mix-updated")]) == set(ids[:3])
    assert _found(app, tenant, SR, [("patient", "p-mix")]) == set(ids)


# --------------------------------------------------------------------------- 8. one statement
def _columns(app: Flask, tenant: str, rtype: str, rid: str) -> tuple[Any, ...]:
    with app.app_context(), get_runtime().engine.connect() as conn:
        row = conn.execute(
            select(RES.c.patient_id, RES.c.status, RES.c.sort_date, RES.c.last_updated).where(
                RES.c.tenant_id == tenant, RES.c.res_type == rtype, RES.c.id == rid
            )
        ).one()
    return tuple(row)


def test_every_deferred_row_goes_out_in_one_statement_on_postgresql(
    pg_app: Flask, tenant: str
) -> None:
    """Rows for all six tables, quotes and non-ASCII included, written by one statement and
    stored exactly as the values `extract` computed (what a per-table INSERT stored)."""
    app = pg_app
    engine: Engine = app.extensions["orders"].engine
    pid, sr = new_id("Patient"), new_id(SR)
    person = patient(
        pid, name=[{"family": "Ó'Brien-Ünal", "given": ['Ann "Q" \\ {x}']}], birthDate="1970-02-03"
    )
    with app.app_context(), _statements(engine) as sql, _uow(tenant) as uow:
        stored = [
            ("Patient", uow.repo.create("Patient", pid, person, patient_id=pid)),
            (SR, uow.repo.create(SR, sr, _order("one-statement", pid=pid))),
        ]
    writes = [s for s, _ in sql if not s.upper().startswith(("SELECT", "BEGIN", "COMMIT"))]
    assert len(writes) == 1 and writes[0] in FLUSH_SQL, f"expected one flush, got {writes}"
    counts = _inserted(sql)
    assert counts["resources"] == 2 and counts["resource_versions"] == 2
    assert {"sp_token", "sp_reference", "sp_date", "sp_string"} <= set(counts), counts
    for rtype, res in stored:
        rows, versions = _stored(app, tenant, rtype, res.id)
        assert rows[0].content == versions[0].content == res.content
        assert _columns(app, tenant, rtype, res.id) == (
            res.patient_id,
            res.content.get("status"),
            res.sort_date,
            res.last_updated,
        )
        values = extract(definitions.for_type(rtype), res.content, patient_id=res.patient_id)
        assert _index_rows(app, tenant, rtype, res.id) == {
            "sp_token": values.tokens,
            "sp_reference": values.references,
            "sp_date": values.dates,
            "sp_string": values.strings,
        }
    assert _found(app, tenant, "Patient", [("name", "ó'brien")]) == {pid}
    assert _found(app, tenant, SR, [("code", "one-statement"), ("patient", pid)]) == {sr}


def test_a_flush_of_many_rows_and_null_columns_on_postgresql(pg_app: Flask, tenant: str) -> None:
    """Resources with no patient and no status (NULL-only arrays) and a few hundred rows in
    one flush."""
    app = pg_app
    ids = [new_id("PlanDefinition") for _ in range(150)]
    with app.app_context(), _uow(tenant) as uow:
        for n, rid in enumerate(ids):
            uow.repo.create(
                "PlanDefinition", rid, {**plan_definition(name=f"Plan{n}"), "status": None}
            )
    with app.app_context(), get_runtime().engine.connect() as conn:
        rows = conn.execute(
            select(RES.c.id, RES.c.patient_id, RES.c.status).where(RES.c.tenant_id == tenant)
        ).all()
    assert sorted(r.id for r in rows) == sorted(ids)
    assert {(r.patient_id, r.status) for r in rows} == {(None, None)}


def test_a_value_too_long_for_its_column_is_a_validation_error_on_postgresql(
    pg_app: Flask, tenant: str
) -> None:
    """PostgreSQL checks `varchar(n)` on the unnested arrays as on a plain INSERT: a 400,
    and nothing of the unit of work is stored."""
    app = pg_app
    rid, other = new_id(SR), new_id(SR)
    with app.app_context(), pytest.raises(ValidationFailed), _uow(tenant) as uow:
        uow.repo.create(SR, other, _order("innocent-long"))
        # Index values are cut to 255 characters by `extract`; a reference id is not.
        uow.repo.create(SR, rid, _order("too-long", pid="p" * 65))
    assert _stored(app, tenant, SR, rid) == ([], []) and _stored(app, tenant, SR, other) == ([], [])
    assert _index_rows(app, tenant, SR, other) == {name: set() for name in INDEX}
