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

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    or_,
    select,
)
from sqlalchemy import tuple_ as sql_tuple
from sqlalchemy.exc import IntegrityError

from app.domain.clock import format_instant, utcnow
from app.errors import VersionConflict
from app.store.audit_log import AUDIT_EVENT, AuditLog
from app.store.conditional_keys import ConditionalKeys
from app.store.listing import NumberedPages
from app.store.records import IdTaken, StoredResource
from app.store.search import definitions
from app.store.search.extract import IndexValues, compartment_patient, extract
from app.store.statements import (
    COMPARE_AND_SET,
    DELETE_INDEX,
    DT,
    EXISTING,
    INDEX_COLUMNS,
    INDEX_TABLES,
    INSERT,
    OF_PATIENT,
    RAW_ROW,
    READ,
    REF,
    STR,
    TABLE_OF_TYPE,
    TOK,
    R,
    V,
)


class Repository(NumberedPages, ConditionalKeys, AuditLog):
    # ---------------------------------------------------------------- reads
    def read(
        self, resource_type: str, rid: str, *, for_update: bool = False
    ) -> StoredResource | None:
        if resource_type == AUDIT_EVENT:  # not a stored resource: the trail's own table
            return self.read_audit_event(rid)
        key = (self.patient_scope is not None, for_update)
        rows = self._fetch(READ[key], self._binds(resource_type, rid))
        if not rows:
            return None
        found = rows[0]
        self._seen[(resource_type, rid)] = (found, None)
        return found

    def _in_compartment(self, version: StoredResource, current: StoredResource) -> bool:
        """A limited token sees a version only if that version itself is in its compartment
        (a version written before a subject changed may belong to another patient)."""
        if self.patient_scope is None:
            return True
        definition = definitions.for_type(version.resource_type)
        owner = compartment_patient(definition, version.content, patient_id=current.patient_id)
        return owner == self.patient_scope

    def last_seen(self, resource_type: str, rid: str) -> StoredResource | None:
        """The version of a resource this unit of work last read or wrote (None if neither):
        what a writer is about to replace, so a service can tell a status change."""
        seen = self._seen.get((resource_type, rid))
        return seen[0] if seen else None

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
        found = StoredResource(
            resource_type, rid, row.version_id, row.last_updated, row.content, current.patient_id
        )
        return found if self._in_compartment(found, current) else None

    def history(
        self,
        resource_type: str,
        rid: str,
        *,
        count: int | None,
        before_version: int | None = None,
    ) -> tuple[list[StoredResource], int] | None:
        """Versions newest first, at most `count` (None: every one, for a face that shows
        a whole history)."""
        current = self.read(resource_type, rid)
        if current is None:
            return None
        scoped = self.patient_scope is not None
        where = [V.c.tenant_id == self.tenant_id, V.c.res_type == resource_type, V.c.id == rid]
        if before_version is not None and not scoped:
            where.append(V.c.version_id < before_version)
        stmt = select(V).where(*where).order_by(V.c.version_id.desc())
        rows = self._execute(stmt if scoped or count is None else stmt.limit(count)).all()
        versions = [
            StoredResource(
                resource_type, rid, r.version_id, r.last_updated, r.content, current.patient_id
            )
            for r in rows
        ]
        if not scoped:
            return versions, current.version_id
        # A limited token: only the versions in its compartment, and only those counted.
        visible = [v for v in versions if self._in_compartment(v, current)]
        page = [v for v in visible if before_version is None or v.version_id < before_version]
        return page[:count], len(visible)

    def existing(self, refs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (type, id) pairs exist for this tenant (and compartment)."""
        by_type: dict[str, set[str]] = defaultdict(set)
        for rtype, rid in refs:
            by_type[rtype].add(rid)
        found: set[tuple[str, str]] = set()
        scoped = self.patient_scope is not None
        for rtype, ids in by_type.items():
            if rtype == AUDIT_EVENT:  # a reference to an event of the trail
                found.update((rtype, rid) for rid in self.existing_audit_events(ids))
                continue
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
        return self._fetch(stmt, binds)

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
        versioned: bool = True,
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
        if versioned:  # immutable records (AuditEvent) have no history to keep
            self._write_version(stored)
        self._write_index(
            resource_type, rid, values.tokens, values.references, values.dates, values.strings
        )
        self._seen[(resource_type, rid)] = (stored, values)
        self.written.append(stored)
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
        self.written.append(stored)
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
