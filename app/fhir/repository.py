"""The resource repository: the only code that queries the resource tables.

It is constructed with a tenant (and, for a PATIENT, a compartment) already bound, so no
caller can forget either: every statement below filters on both. It owns versioning:
`meta.versionId`/`meta.lastUpdated` are stamped here, and an update is one compare-and-set
statement (`UPDATE … WHERE version_id = :expected`), so of two racing writers exactly one
wins. The caller owns the transaction (STYLE habit 4): nothing here commits.

Inserts are deferred: rows are collected per table and written (on PostgreSQL as one
statement for all tables, `pg_flush`; on SQLite one executemany per table) when the next
statement runs or when the unit of work commits (`flush`), so a write that stores an
order, its alerts and their Provenance costs a handful of round trips, not one per row.
Any read flushes first, so a unit of work always reads its own writes; a caller driving a
Repository without a UnitOfWork must call `flush()` before committing.
An update diffs the search-index rows against the version it replaces (known from the read
that preceded it) and touches only the rows that changed.

The hot statements are built once, with bind parameters, instead of per call: composing
SQLAlchemy expressions was a measurable share of each request (docs/performance.md).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Select,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy import cast as cast_
from sqlalchemy import tuple_ as sql_tuple
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from app.errors import VersionConflict
from app.fhir.pg_flush import FlushStatement
from app.fhir.search import definitions
from app.fhir.search.dates import format_instant
from app.fhir.search.extract import IndexValues, extract
from app.fhir.search.query import Criterion, Cursor, DateValue, SearchQuery
from app.fhir.storage import (
    ConditionalKeyRow,
    DateIndexRow,
    ReferenceIndexRow,
    ResourceRow,
    ResourceVersionRow,
    StringIndexRow,
    TokenIndexRow,
)

R = cast(Table, ResourceRow.__table__)
V = cast(Table, ResourceVersionRow.__table__)
TOK = cast(Table, TokenIndexRow.__table__)
REF = cast(Table, ReferenceIndexRow.__table__)
DT = cast(Table, DateIndexRow.__table__)
STR = cast(Table, StringIndexRow.__table__)
CK = cast(Table, ConditionalKeyRow.__table__)
INDEX_TABLES = (TOK, REF, DT, STR)
#: Flush order: the same for every transaction, so concurrent writers lock tables alike.
WRITE_ORDER = (R, V, TOK, REF, DT, STR)
#: Each index table's value columns, in IndexValues' tuple order.
INDEX_COLUMNS: dict[Table, tuple[str, str, str]] = {
    TOK: ("param", "system", "code"),
    REF: ("param", "ref_type", "ref_id"),
    DT: ("param", "low", "high"),
    STR: ("param", "value", "exact"),
}
#: Which index table holds each search-parameter type's rows.
TABLE_OF_TYPE = {"token": TOK, "reference": REF, "date": DT, "string": STR}


#: A resource row with its document as the stored JSON text (see StoredResource.raw).
RAW_ROW = (
    R.c.res_type,
    R.c.id,
    R.c.version_id,
    R.c.last_updated,
    R.c.patient_id,
    R.c.sort_date,
    cast_(R.c.content, Text).label("raw"),
)


def _by_id(*, scoped: bool, lock: bool) -> Select[Any]:
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id == bindparam("b_id"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    return stmt.with_for_update() if lock else stmt


def _existing(*, scoped: bool) -> Select[Any]:
    stmt = select(R.c.id).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id.in_(bindparam("b_ids", expanding=True)),
    )
    return stmt.where(R.c.patient_id == bindparam("b_patient")) if scoped else stmt


def _compare_and_set(*, scoped: bool) -> Update:
    stmt = sql_update(R).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id == bindparam("b_id"),
        R.c.version_id == bindparam("b_expected"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    return stmt.values(
        version_id=bindparam("b_version"),
        last_updated=bindparam("b_now"),
        patient_id=bindparam("b_patient_id"),
        status=bindparam("b_status"),
        sort_date=bindparam("b_sort_date"),
        content=bindparam("b_content", type_=R.c.content.type),
    )


def _fetch_many(*, scoped: bool) -> Select[Any]:
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        sql_tuple(R.c.res_type, R.c.id).in_(bindparam("b_refs", expanding=True)),
    )
    return stmt.where(R.c.patient_id == bindparam("b_patient")) if scoped else stmt


def _of_patient(*, scoped: bool, statuses: bool, codes: bool) -> Select[Any]:
    """A patient's resources of one type, optionally with a status among a list and a
    `code` token among (system, code) pairs or bare codes (any system)."""
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.patient_id == bindparam("b_subject"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    if statuses:
        stmt = stmt.where(R.c.status.in_(bindparam("b_statuses", expanding=True)))
    if codes:
        coded = select(TOK.c.res_id).where(
            TOK.c.tenant_id == bindparam("b_tenant"),
            TOK.c.res_type == bindparam("b_type"),
            TOK.c.param == "code",
            or_(
                sql_tuple(TOK.c.system, TOK.c.code).in_(bindparam("b_pairs", expanding=True)),
                TOK.c.code.in_(bindparam("b_bare", expanding=True)),
            ),
        )
        stmt = stmt.where(R.c.id.in_(coded))
    return stmt.order_by(R.c.id)


def _delete_index(table: Table) -> Delete:
    return delete(table).where(
        table.c.tenant_id == bindparam("b_tenant"),
        table.c.res_type == bindparam("b_type"),
        table.c.res_id == bindparam("b_id"),
    )


READ = {(s, lock): _by_id(scoped=s, lock=lock) for s in (False, True) for lock in (False, True)}
EXISTING = {s: _existing(scoped=s) for s in (False, True)}
COMPARE_AND_SET = {s: _compare_and_set(scoped=s) for s in (False, True)}
FETCH_MANY = {s: _fetch_many(scoped=s) for s in (False, True)}
OF_PATIENT = {
    (s, st, c): _of_patient(scoped=s, statuses=st, codes=c)
    for s in (False, True)
    for st in (False, True)
    for c in (False, True)
}
DELETE_INDEX = {t: _delete_index(t) for t in INDEX_TABLES}
INSERT = {t: insert(t) for t in WRITE_ORDER}
PG_FLUSH = FlushStatement(WRITE_ORDER)
CLAIM_KEY = {
    # An INSERT's rowcount is only kept on request (SQLAlchemy 2.x `preserve_rowcount`).
    "postgresql": pg_insert(CK).on_conflict_do_nothing().execution_options(preserve_rowcount=True),
    "sqlite": sqlite_insert(CK).on_conflict_do_nothing().execution_options(preserve_rowcount=True),
}


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource. Read paths that only pass the document on (GET by id, a
    search page) fetch it as the stored JSON text (`raw`) and never parse it: `content`
    parses on first use, `json` hands the text to the response as it is."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    doc: dict[str, Any] | None
    patient_id: str | None = None
    sort_date: datetime | None = None
    raw: str | None = None

    @cached_property
    def content(self) -> dict[str, Any]:
        if self.doc is not None:
            return self.doc
        assert self.raw is not None
        parsed: dict[str, Any] = orjson.loads(self.raw)
        return parsed

    @property
    def json(self) -> dict[str, Any] | orjson.Fragment:
        """The document for a response body: the stored text untouched when it was read as
        text (no parse and re-serialisation), else the dict."""
        if self.raw is not None and self.doc is None:
            return orjson.Fragment(self.raw)
        return self.content

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def versioned_reference(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


@dataclass
class SearchPage:
    resources: list[StoredResource]
    total: int | None
    next_cursor: Cursor | None
    prev_cursor: Cursor | None
    included: list[StoredResource] = field(default_factory=list)


class IdTaken(Exception):
    """A create raced another create of the same id (update-as-create)."""


def utcnow() -> datetime:
    """Now, at the millisecond precision `meta.lastUpdated` reports, so `_lastUpdated=eq…`
    with the value a client was given matches what is stored."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Repository:
    def __init__(
        self,
        conn: Connection,
        tenant_id: str,
        *,
        patient_scope: str | None = None,
        read_only: bool = False,
    ):
        self.conn = conn
        self.tenant_id = tenant_id
        self.patient_scope = patient_scope
        self.read_only = read_only
        self._postgresql = conn.dialect.name == "postgresql"
        self._pending: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        #: The version of each resource this unit of work last read or wrote, with its index
        #: values when known: what an update diffs its new index rows against.
        self._seen: dict[tuple[str, str], tuple[StoredResource, IndexValues | None]] = {}

    # ---------------------------------------------------------------- statements
    def _execute(self, statement: Any, params: Any = None) -> Any:
        """Every statement goes through here: pending inserts are written first."""
        if self._pending:
            self.flush()
        return self.conn.execute(statement, params)

    def flush(self) -> None:
        """Write the deferred inserts: on PostgreSQL one statement for every table
        (`pg_flush`), elsewhere one executemany per table."""
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(list)
        if self._postgresql:
            PG_FLUSH.execute(self.conn, pending)
            return
        for table in WRITE_ORDER:
            rows = pending.get(table)
            if rows:
                self.conn.execute(INSERT[table], rows[0] if len(rows) == 1 else rows)

    def _binds(self, resource_type: str, rid: str | None = None) -> dict[str, Any]:
        binds: dict[str, Any] = {"b_tenant": self.tenant_id, "b_type": resource_type}
        if rid is not None:
            binds["b_id"] = rid
        if self.patient_scope is not None:
            binds["b_patient"] = self.patient_scope
        return binds

    def _writable(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot write")

    # ---------------------------------------------------------------- scoping
    def _scoped(self, resource_type: str) -> list[ColumnElement[bool]]:
        where = [R.c.tenant_id == self.tenant_id, R.c.res_type == resource_type]
        if self.patient_scope is not None:
            where.append(R.c.patient_id == self.patient_scope)
        return where

    @staticmethod
    def _row(row: Any) -> StoredResource:
        """A row of `RAW_ROW` columns (every read selects them): the document stays text
        until someone reads `.content`."""
        return StoredResource(
            row.res_type,
            row.id,
            row.version_id,
            row.last_updated,
            None,
            row.patient_id,
            row.sort_date,
            row.raw,
        )

    # ---------------------------------------------------------------- reads
    def read(
        self, resource_type: str, rid: str, *, for_update: bool = False
    ) -> StoredResource | None:
        stmt = READ[(self.patient_scope is not None, for_update)]
        row = self._execute(stmt, self._binds(resource_type, rid)).first()
        if row is None:
            return None
        found = self._row(row)
        self._seen[(resource_type, rid)] = (found, None)
        return found

    def vread(self, resource_type: str, rid: str, version_id: int) -> StoredResource | None:
        current = self.read(resource_type, rid)
        if current is None:
            return None
        row = self._execute(
            select(V).where(
                V.c.tenant_id == self.tenant_id,
                V.c.res_type == resource_type,
                V.c.id == rid,
                V.c.version_id == version_id,
            )
        ).first()
        if row is None:
            return None
        return StoredResource(
            resource_type, rid, row.version_id, row.last_updated, row.content, current.patient_id
        )

    def history(
        self, resource_type: str, rid: str, *, count: int, before_version: int | None = None
    ) -> tuple[list[StoredResource], int] | None:
        current = self.read(resource_type, rid)
        if current is None:
            return None
        where = [V.c.tenant_id == self.tenant_id, V.c.res_type == resource_type, V.c.id == rid]
        if before_version is not None:
            where.append(V.c.version_id < before_version)
        rows = self._execute(
            select(V).where(*where).order_by(V.c.version_id.desc()).limit(count)
        ).all()
        versions = [
            StoredResource(
                resource_type, rid, r.version_id, r.last_updated, r.content, current.patient_id
            )
            for r in rows
        ]
        return versions, current.version_id

    def existing(self, refs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (type, id) pairs exist for this tenant (and compartment)."""
        by_type: dict[str, set[str]] = defaultdict(set)
        for rtype, rid in refs:
            by_type[rtype].add(rid)
        found: set[tuple[str, str]] = set()
        scoped = self.patient_scope is not None
        for rtype, ids in by_type.items():
            binds = {**self._binds(rtype), "b_ids": sorted(ids)}
            rows = self._execute(EXISTING[scoped], binds).all()
            found.update((rtype, r.id) for r in rows)
        return found

    def read_any(self, resource_types: Iterable[str], rid: str) -> StoredResource | None:
        """The resource with this id among several types (legacy order ids carry no type)."""
        where = [
            R.c.tenant_id == self.tenant_id,
            R.c.res_type.in_(list(resource_types)),
            R.c.id == rid,
        ]
        if self.patient_scope is not None:
            where.append(R.c.patient_id == self.patient_scope)
        row = self._execute(select(*RAW_ROW).where(*where)).first()
        if row is None:
            return None
        found = self._row(row)
        self._seen[(found.resource_type, rid)] = (found, None)
        return found

    def referencing(
        self, source_type: str, param: str, targets: Iterable[tuple[str, str]]
    ) -> list[StoredResource]:
        """Resources of `source_type` whose reference parameter `param` points at any of
        `targets` ((type, id) pairs): one query for a whole page (e.g. the alerts or Tasks
        of twenty orders), instead of one per target."""
        by_type: dict[str, set[str]] = defaultdict(set)
        for rtype, rid in targets:
            by_type[rtype].add(rid)
        if not by_type:
            return []
        sub = select(REF.c.res_id).where(
            REF.c.tenant_id == self.tenant_id,
            REF.c.res_type == source_type,
            REF.c.param == param,
            or_(*[and_(REF.c.ref_type == t, REF.c.ref_id.in_(ids)) for t, ids in by_type.items()]),
        )
        rows = self._execute(select(*RAW_ROW).where(*self._scoped(source_type), R.c.id.in_(sub)))
        return [self._row(r) for r in rows]

    def of_patient(
        self,
        resource_type: str,
        patient_id: str,
        *,
        statuses: Iterable[str] | None = None,
        codes: Iterable[tuple[str, str]] | None = None,
    ) -> list[StoredResource]:
        """Every resource of a type in a patient's compartment (in id order), optionally
        narrowed to statuses and to a `code` among (system, code) pairs, where an empty
        system matches the code in any system. Decision support's fixed lookups: one
        prebuilt statement instead of a parsed and composed search, and no page cap."""
        binds = {**self._binds(resource_type), "b_subject": patient_id}
        if statuses is not None:
            binds["b_statuses"] = list(statuses)
        if codes is not None:
            pairs = list(codes)
            binds["b_pairs"] = [(system, code) for system, code in pairs if system]
            binds["b_bare"] = [code for system, code in pairs if not system]
        stmt = OF_PATIENT[(self.patient_scope is not None, statuses is not None, codes is not None)]
        return [self._row(r) for r in self._execute(stmt, binds)]

    def created_at(self, resource_type: str, ids: Iterable[str]) -> dict[str, datetime]:
        """When version 1 of each resource was written."""
        rows = self._execute(
            select(V.c.id, V.c.last_updated).where(
                V.c.tenant_id == self.tenant_id,
                V.c.res_type == resource_type,
                V.c.id.in_(list(ids)),
                V.c.version_id == 1,
            )
        )
        return {r.id: r.last_updated for r in rows}

    def fetch_many(self, refs: Iterable[tuple[str, str]]) -> list[StoredResource]:
        """Resources of any mix of types, in one prebuilt statement (`(type, id) IN …`,
        which PostgreSQL plans as one primary-key probe per pair)."""
        wanted = sorted(set(refs))
        if not wanted:
            return []
        binds = {"b_tenant": self.tenant_id, "b_refs": wanted}
        if self.patient_scope is not None:
            binds["b_patient"] = self.patient_scope
        out = [
            self._row(r) for r in self._execute(FETCH_MANY[self.patient_scope is not None], binds)
        ]
        for found in out:
            self._seen[(found.resource_type, found.id)] = (found, None)
        return out

    # ---------------------------------------------------------------- writes
    def _stamp(
        self, resource_type: str, rid: str, content: dict[str, Any], version: int, now: datetime
    ) -> dict[str, Any]:
        meta = {
            k: v
            for k, v in (content.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")
        }
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        stamped = {"resourceType": resource_type, "id": rid, "meta": meta}
        stamped.update(
            {k: v for k, v in content.items() if k not in ("resourceType", "id", "meta")}
        )
        return stamped

    def create(
        self,
        resource_type: str,
        rid: str,
        content: dict[str, Any],
        *,
        patient_id: str | None = None,
        may_exist: bool = False,
    ) -> StoredResource:
        """Insert version 1. `may_exist` (client-chosen ids) writes the row at once, under a
        savepoint, so a racing create of the same id surfaces here as `IdTaken` instead of a
        broken transaction. Otherwise the row is deferred (see the module docstring); a
        clash on a server-minted id would surface at commit as a conflict."""
        self._writable()
        now = utcnow()
        doc = self._stamp(resource_type, rid, content, 1, now)
        values = extract(definitions.for_type(resource_type), doc, patient_id=patient_id)
        row = {
            "tenant_id": self.tenant_id,
            "res_type": resource_type,
            "id": rid,
            "version_id": 1,
            "last_updated": now,
            "patient_id": values.patient_id,
            "status": values.status,
            "sort_date": values.sort_date,
            "content": doc,
        }
        if may_exist:
            self.flush()
            try:
                with self.conn.begin_nested():
                    self.conn.execute(INSERT[R], row)
            except IntegrityError as exc:
                raise IdTaken(rid) from exc
        else:
            self._pending[R].append(row)
        stored = StoredResource(
            resource_type, rid, 1, now, doc, values.patient_id, values.sort_date
        )
        self._write_version(stored)
        self._write_index(
            resource_type, rid, values.tokens, values.references, values.dates, values.strings
        )
        self._seen[(resource_type, rid)] = (stored, values)
        return stored

    def update(
        self, resource_type: str, rid: str, content: dict[str, Any], expected_version: int
    ) -> StoredResource:
        """Compare-and-set: writes version `expected_version + 1` or raises VersionConflict."""
        self._writable()
        now = utcnow()
        version = expected_version + 1
        definition = definitions.for_type(resource_type)
        doc = self._stamp(resource_type, rid, content, version, now)
        values = extract(definition, doc)
        binds = {
            **self._binds(resource_type, rid),
            "b_expected": expected_version,
            "b_version": version,
            "b_now": now,
            "b_patient_id": values.patient_id,
            "b_status": values.status,
            "b_sort_date": values.sort_date,
            "b_content": doc,
        }
        result = self._execute(COMPARE_AND_SET[self.patient_scope is not None], binds)
        if result.rowcount != 1:
            raise VersionConflict(
                f"{resource_type}/{rid} is not at version {expected_version}; re-read and retry"
            )
        previous = self._previous_index(resource_type, rid, expected_version)
        if previous is None:
            # The replaced version's index rows are unknown here: replace them all.
            tables = {TABLE_OF_TYPE[p.type] for p in definition.params.values()}
            for table in INDEX_TABLES:
                if table in tables:
                    self._execute(DELETE_INDEX[table], self._binds(resource_type, rid))
            self._write_index(
                resource_type, rid, values.tokens, values.references, values.dates, values.strings
            )
        else:
            self._replace_index(resource_type, rid, previous, values)
        stored = StoredResource(
            resource_type, rid, version, now, doc, values.patient_id, values.sort_date
        )
        self._write_version(stored)
        self._seen[(resource_type, rid)] = (stored, values)
        return stored

    def _previous_index(self, resource_type: str, rid: str, version: int) -> IndexValues | None:
        """Index values of the version an update replaced, if this unit of work read or wrote
        exactly that version (contents of a version never change, so they are its rows)."""
        seen = self._seen.get((resource_type, rid))
        if seen is None or seen[0].version_id != version:
            return None
        stored, values = seen
        if values is None:
            values = extract(
                definitions.for_type(resource_type), stored.content, patient_id=stored.patient_id
            )
        return values

    def _replace_index(
        self, resource_type: str, rid: str, old: IndexValues, new: IndexValues
    ) -> None:
        pairs = (
            (TOK, old.tokens, new.tokens),
            (REF, old.references, new.references),
            (DT, old.dates, new.dates),
            (STR, old.strings, new.strings),
        )
        for table, before, after in pairs:
            gone = before - after
            if gone:
                cols = [table.c[name] for name in INDEX_COLUMNS[table]]
                self._execute(
                    delete(table).where(
                        table.c.tenant_id == self.tenant_id,
                        table.c.res_type == resource_type,
                        table.c.res_id == rid,
                        sql_tuple(*cols).in_(sorted(gone)),
                    )
                )
        self._write_index(
            resource_type,
            rid,
            new.tokens - old.tokens,
            new.references - old.references,
            new.dates - old.dates,
            new.strings - old.strings,
        )

    def _write_version(self, stored: StoredResource) -> None:
        self._pending[V].append(
            {
                "tenant_id": self.tenant_id,
                "res_type": stored.resource_type,
                "id": stored.id,
                "version_id": stored.version_id,
                "last_updated": stored.last_updated,
                "content": stored.content,
            }
        )

    def _write_index(
        self,
        resource_type: str,
        rid: str,
        tokens: Iterable[tuple[str, str, str]],
        references: Iterable[tuple[str, str, str]],
        dates: Iterable[tuple[str, datetime, datetime]],
        strings: Iterable[tuple[str, str, str]],
    ) -> None:
        base = {"tenant_id": self.tenant_id, "res_type": resource_type, "res_id": rid}
        pending = self._pending
        batches = (
            (TOK, [{**base, "param": p, "system": s, "code": c} for p, s, c in tokens]),
            (REF, [{**base, "param": p, "ref_type": t, "ref_id": i} for p, t, i in references]),
            (DT, [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in dates]),
            (STR, [{**base, "param": p, "value": v, "exact": e} for p, v, e in strings]),
        )
        for table, rows in batches:
            if rows:  # no empty entries: an empty `_pending` means nothing to flush
                pending[table] += rows

    # ---------------------------------------------------------------- conditional create
    def key_owner(self, resource_type: str, key: str) -> tuple[str, str | None] | None:
        """(resource id, payload hash) holding a key, if any."""
        row = self._execute(
            select(CK.c.res_id, CK.c.payload_hash).where(
                CK.c.tenant_id == self.tenant_id, CK.c.res_type == resource_type, CK.c.key == key
            )
        ).first()
        return (row.res_id, row.payload_hash) if row else None

    def claim_conditional_key(
        self, resource_type: str, key: str, rid: str, payload_hash: str | None = None
    ) -> bool:
        """Insert the key row; False if another transaction holds it (it then wins).

        `INSERT … ON CONFLICT DO NOTHING` (PostgreSQL and SQLite): on PostgreSQL a concurrent
        insert of the same key blocks until the first commits, then inserts nothing here:
        exactly one creator per key, whatever the timing — in one round trip, no savepoint.
        """
        self._writable()
        row = {
            "tenant_id": self.tenant_id,
            "res_type": resource_type,
            "key": key,
            "res_id": rid,
            "payload_hash": payload_hash,
        }
        result = self._execute(CLAIM_KEY[self.conn.dialect.name], row)
        return bool(result.rowcount == 1)

    def reassign_conditional_key(self, resource_type: str, key: str, rid: str) -> None:
        self._writable()
        self._execute(
            sql_update(CK)
            .where(
                CK.c.tenant_id == self.tenant_id, CK.c.res_type == resource_type, CK.c.key == key
            )
            .values(res_id=rid)
        )

    # ---------------------------------------------------------------- search
    def search(self, query: SearchQuery) -> SearchPage:
        shape = _column_shape(query)
        if shape is not None and not query.summary_count:
            return self._column_page(query, shape)
        where = self._scoped(query.resource_type)
        for criterion in query.criteria:
            where.append(self._criterion(query.resource_type, criterion))
        if query.summary_count:
            return SearchPage([], self._count(where), None, None)
        return self._page(query, where)

    def _column_page(self, query: SearchQuery, shape: tuple[Any, ...]) -> SearchPage:
        """A page of a search on the resource table's own columns only (`_id`, the
        patient, `status` — what an EHR asks most: `patient=…&status=…`): the statement is
        built once per shape with bind parameters and reused, instead of composing and
        cache-keying a SQLAlchemy expression per request (a fifth of a search's CPU)."""
        scoped = self.patient_scope is not None
        binds = self._binds(query.resource_type)
        for n, criterion in enumerate(query.criteria):
            values = _column_values(criterion)
            if values:
                binds[f"b_c{n}"] = values
        cursor = query.cursor
        if cursor is not None:
            binds["b_cursor_id"] = cursor.id
            if query.sort_column != "id":
                binds["b_cursor_key"] = _decode_key(query.sort_column, cursor.key)
        binds["b_limit"] = query.count + 1
        rows = self._execute(_column_statement(shape, scoped), binds).all()
        return self._finish_page(query, rows, lambda: self._count_binds(shape, scoped, binds))

    def _count_binds(self, shape: tuple[Any, ...], scoped: bool, binds: dict[str, Any]) -> int:
        stmt = _column_count(shape[0], scoped)
        wanted = {k: v for k, v in binds.items() if not k.startswith(("b_cursor", "b_limit"))}
        return int(self._execute(stmt, wanted).scalar_one())

    def _count(self, where: list[ColumnElement[bool]]) -> int:
        return int(self._execute(select(func.count()).select_from(R).where(*where)).scalar_one())

    def search_all(self, query: SearchQuery, *, page_size: int = 1000) -> list[StoredResource]:
        """Every match, following keyset pages to the end: for checks that must see all of
        a patient's orders (decision support), where a page cap would hide some."""
        query.with_total = False
        query.count = page_size
        found: list[StoredResource] = []
        while True:
            page = self.search(query)
            found += page.resources
            if page.next_cursor is None:
                return found
            query.cursor = page.next_cursor

    def _page(self, query: SearchQuery, where: list[ColumnElement[bool]]) -> SearchPage:
        """One page by keyset; with `total`, the count rides along as a scalar subquery of
        the same statement (one round trip, one snapshot)."""
        cursor = query.cursor
        backwards = cursor is not None and cursor.direction == "prev"
        after = None
        if cursor is not None:
            after = (_decode_key(query.sort_column, cursor.key), cursor.id)
        stmt = _paged(
            where,
            sort_column=query.sort_column,
            descending=query.descending != backwards,
            with_total=query.with_total,
            after=after,
            limit=query.count + 1,
        )
        rows = self._execute(stmt).all()
        return self._finish_page(query, rows, lambda: self._count(where))

    def _finish_page(
        self, query: SearchQuery, rows: list[Any], count: Callable[[], int]
    ) -> SearchPage:
        """Rows (at most one more than a page, with `total` when asked) → SearchPage."""
        cursor = query.cursor
        backwards = cursor is not None and cursor.direction == "prev"
        total = None
        if query.with_total:
            # No row, no count: zero unless a cursor has walked past the last match.
            total = rows[0].total if rows else (count() if cursor else 0)
        more = len(rows) > query.count
        found = [self._row(r) for r in rows[: query.count]]
        if backwards:
            found.reverse()
        has_next = more if not backwards else True
        has_prev = (cursor is not None) if not backwards else more
        page = SearchPage(found, total, None, None)
        if found and query.count:
            if has_next:
                page.next_cursor = self._cursor("next", query, found[-1])
            if has_prev:
                page.prev_cursor = self._cursor("prev", query, found[0])
        page.included = self._includes(query, found)
        return page

    @staticmethod
    def _cursor(direction: str, query: SearchQuery, res: StoredResource) -> Cursor:
        if query.sort_column == "id":
            key: Any = None
        elif query.sort_column == "last_updated":
            key = res.last_updated.isoformat()
        else:
            assert res.sort_date is not None  # rows read by search always carry it
            key = res.sort_date.isoformat()
        return Cursor(direction, query.sort_param, key, res.id)

    def _criterion(self, resource_type: str, c: Criterion) -> ColumnElement[bool]:
        if c.kind == "id":
            return R.c.id.in_(c.values)
        if c.kind == "lastUpdated":
            return and_(*[_point_cond(R.c.last_updated, v) for v in c.values])
        assert c.param is not None
        param = c.param
        if c.kind == "token" and param.column == "status":
            codes = [v.code for v in c.values if v.code is not None]
            return R.c.status.in_(codes) if codes else R.c.status.is_not(None)
        if c.kind == "reference" and param.column == "patient_id":
            ids = [v.id for v in c.values if v.type in (None, "Patient")]
            return R.c.patient_id.in_(ids) if ids else false()
        table, conds = self._index_conds(c)
        sub = select(table.c.res_id).where(
            table.c.tenant_id == self.tenant_id,
            table.c.res_type == resource_type,
            table.c.param == param.name,
            or_(*conds),
        )
        return R.c.id.in_(sub)

    @staticmethod
    def _index_conds(c: Criterion) -> tuple[Any, list[ColumnElement[bool]]]:
        conds: list[ColumnElement[bool]] = []
        if c.kind == "token":
            for v in c.values:
                parts = []
                if v.code is not None:
                    parts.append(TOK.c.code == v.code)
                if v.system is not None:
                    parts.append(TOK.c.system == v.system)
                conds.append(and_(*parts))
            return TOK, conds
        if c.kind == "reference":
            for v in c.values:
                parts = [REF.c.ref_id == v.id]
                if v.type:
                    parts.append(REF.c.ref_type == v.type)
                conds.append(and_(*parts))
            return REF, conds
        if c.kind == "date":
            return DT, [_range_cond(DT.c.low, DT.c.high, v) for v in c.values]
        for v in c.values:
            if c.modifier == "exact":
                conds.append(STR.c.exact == v)
            elif c.modifier == "contains":
                conds.append(STR.c.value.contains(v, autoescape=True))
            else:
                conds.append(STR.c.value.startswith(v, autoescape=True))
        return STR, conds

    def _includes(self, query: SearchQuery, found: list[StoredResource]) -> list[StoredResource]:
        if not found or not (query.includes or query.revincludes):
            return []
        ids = [r.id for r in found]
        refs: set[tuple[str, str]] = set()
        for inc in query.includes:
            stmt = select(REF.c.ref_type, REF.c.ref_id).where(
                REF.c.tenant_id == self.tenant_id,
                REF.c.res_type == query.resource_type,
                REF.c.param == inc.param,
                REF.c.res_id.in_(ids),
            )
            if inc.target_type:
                stmt = stmt.where(REF.c.ref_type == inc.target_type)
            refs.update(
                (t, i) for t, i in self._execute(stmt).all() if t in definitions.load_definitions()
            )
        for inc in query.revincludes:
            stmt = select(REF.c.res_id).where(
                REF.c.tenant_id == self.tenant_id,
                REF.c.res_type == inc.source_type,
                REF.c.param == inc.param,
                REF.c.ref_type == query.resource_type,
                REF.c.ref_id.in_(ids),
            )
            refs.update((inc.source_type, i) for i in self._execute(stmt).scalars())
        seen = {(r.resource_type, r.id) for r in found}
        return self.fetch_many(refs - seen)


def _decode_key(column: str, key: Any) -> Any:
    if column in ("last_updated", "sort_date"):
        return datetime.fromisoformat(key)
    return key


def _point_cond(col: Any, v: DateValue) -> ColumnElement[bool]:
    """Prefix semantics for a column holding an instant (search.html#prefix)."""
    table: dict[str, ColumnElement[bool]] = {
        "eq": and_(col >= v.low, col < v.high),
        "ne": or_(col < v.low, col >= v.high),
        "gt": col >= v.high,
        "sa": col >= v.high,
        "lt": col < v.low,
        "eb": col < v.low,
        "ge": col >= v.low,
        "le": col < v.high,
    }
    return table[v.prefix]


def _range_cond(low: Any, high: Any, v: DateValue) -> ColumnElement[bool]:
    """Prefix semantics for an indexed range [low, high) against the search range."""
    table: dict[str, ColumnElement[bool]] = {
        "eq": and_(low >= v.low, high <= v.high),
        "ne": or_(low < v.low, high > v.high),
        "gt": high > v.high,
        "lt": low < v.low,
        "ge": high > v.low,
        "le": low < v.high,
        "sa": low >= v.high,
        "eb": high <= v.low,
    }
    return table[v.prefix]


# ------------------------------------------------------------------ column-only searches
def _is_column(c: Criterion) -> bool:
    """Answered by the resource table's own columns (see `Repository._criterion`)."""
    if c.kind == "id":
        return True
    if c.param is None:
        return False
    return (c.kind == "token" and c.param.column == "status") or (
        c.kind == "reference" and c.param.column == "patient_id"
    )


def _column_values(c: Criterion) -> list[str]:
    """The bound values of a column criterion (empty: it matches on presence, or nothing)."""
    if c.kind == "id":
        return list(c.values)
    if c.kind == "token":
        return [v.code for v in c.values if v.code is not None]
    return [v.id for v in c.values if v.type in (None, "Patient")]


def _column_shape(query: SearchQuery) -> tuple[Any, ...] | None:
    """What the statement of a column-only search depends on besides bound values, or None
    when a criterion needs the index tables (those keep the general path)."""
    if not all(_is_column(c) for c in query.criteria):
        return None
    kinds = tuple(
        (c.kind if c.kind == "id" else c.param.column if c.param else "", bool(_column_values(c)))
        for c in query.criteria
    )
    cursor = query.cursor
    direction = None if cursor is None else cursor.direction
    return (kinds, query.sort_column, query.descending, direction, query.with_total)


def _column_where(kinds: tuple[tuple[str, bool], ...], scoped: bool) -> list[Any]:
    where: list[Any] = [
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
    ]
    if scoped:
        where.append(R.c.patient_id == bindparam("b_patient"))
    for n, (column, has_values) in enumerate(kinds):
        col = R.c[column]
        if has_values:
            where.append(col.in_(bindparam(f"b_c{n}", expanding=True)))
        elif column == "status":
            where.append(col.is_not(None))  # a status criterion with no code: any status
        else:
            where.append(false())  # a patient criterion naming no Patient: no match
    return where


@functools.lru_cache(maxsize=256)
def _column_count(kinds: tuple[tuple[str, bool], ...], scoped: bool) -> Select[Any]:
    return select(func.count()).select_from(R).where(*_column_where(kinds, scoped))


@functools.lru_cache(maxsize=512)
def _column_statement(shape: tuple[Any, ...], scoped: bool) -> Select[Any]:
    """The page statement of one column-only search shape (`Repository._page`'s query with
    bind parameters: same filters, keyset condition, order and count subquery)."""
    kinds, sort_column, descending_sort, direction, with_total = shape
    after: tuple[Any, Any] | None = None
    if direction is not None:
        key_type = R.c[sort_column].type
        after = (bindparam("b_cursor_key", type_=key_type), bindparam("b_cursor_id"))
    return _paged(
        _column_where(kinds, scoped),
        sort_column=sort_column,
        descending=descending_sort != (direction == "prev"),
        with_total=with_total,
        after=after,
        limit=bindparam("b_limit"),
    )


def _paged(
    where: list[Any],
    *,
    sort_column: str,
    descending: bool,
    with_total: bool,
    after: tuple[Any, Any] | None,
    limit: Any,
) -> Select[Any]:
    """One keyset page: the rows after (sort key, id) in the wanted order, and with `total`
    the count as a scalar subquery of the same statement (one round trip, one snapshot)."""
    sort_col = R.c[sort_column]
    stmt: Select[Any] = select(*RAW_ROW).where(*where)
    if with_total:
        count = select(func.count()).select_from(R).where(*where).scalar_subquery()
        stmt = stmt.add_columns(count.label("total"))
    if after is not None:
        key, rid = after
        if sort_column == "id":
            cond = R.c.id < rid if descending else R.c.id > rid
        else:
            left, right = sql_tuple(sort_col, R.c.id), sql_tuple(key, rid)
            cond = left < right if descending else left > right
        stmt = stmt.where(cond)
    order = [sort_col.desc(), R.c.id.desc()] if descending else [sort_col.asc(), R.c.id.asc()]
    if sort_column == "id":
        order = order[:1]
    return stmt.order_by(*order).limit(limit)
