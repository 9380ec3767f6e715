"""The access audit trail's table: append, read by id, search (`AuditEvent?…`).

AuditEvents are not stored as resources: one narrow row per event in `audit_events`
(tables.py; docs/decisions.md), written three ways:

- a write's events join the write's deferred inserts (`defer_audit_rows`), so they
  commit with it, in the same one-statement flush;
- buffered read events are appended in bulk by the flusher (`append_audit_rows`): on
  PostgreSQL with `COPY … FROM STDIN` (psycopg 3 `cursor.copy`), no statement to parse, no
  per-row parameters; on SQLite one executemany;
- nothing updates or deletes them (the FHIR face refuses; pruning is the operator's,
  docs/operations.md "Audit trail").

Reads build the FHIR AuditEvent from the row (`app.domain.audit_events.to_fhir`); searches
take the same parsed `SearchQuery` as resources, with the same paging, `_count`, totals and
cursors (`ResourceSearch._page` machinery), answered from the table's own columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, false, or_, select, true

from app.domain.audit_events import CLIENT_SYSTEM, ENDPOINT, INTERACTION, AuditFacts, to_fhir
from app.store.records import SearchPage, StoredResource
from app.store.search.query import Criterion, SearchQuery, TokenValue
from app.store.searching import ResourceSearch, _point_cond
from app.store.statements import INSERT, A

AUDIT_EVENT = "AuditEvent"
COLUMNS = tuple(c.name for c in A.columns)
COPY_SQL = f"COPY {A.name} ({', '.join(COLUMNS)}) FROM STDIN"
#: Both date sorts are `recorded`: an event is stored once, when it is recorded.
SORT_COLUMNS = {"id": A.c.id, "last_updated": A.c.recorded, "sort_date": A.c.recorded}


#: A buffered event's columns: the table's without `id`, which is named when it is written
#: (app/services/audit.py `event_row`); `detail` is JSON text.
ROW_COLUMNS = tuple(c for c in COLUMNS if c != "id")
assert COLUMNS[:3] == ("tenant_id", "id", "recorded"), "copy_text writes them in this order"
#: `COPY … FROM STDIN`'s text format: a backslash, tab, newline or carriage return in a value
#: is escaped; NUL, which no PostgreSQL text can hold, becomes U+FFFD (a token's `sub` is
#: the client's to choose, and one bad value must not fail the batch it is in).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\ufffd"})
_SPECIAL = re.compile("[\\\\\t\n\r\0]")
_NULL = "\\N"


def copy_text(ids: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> bytes:
    """The rows as one `COPY` text-format payload: one `write` per batch instead of one
    `write_row` per event, whose per-value adaptation cost more than the rest of the event.
    A row's values are strings and None but `recorded` (ISO 8601, which `timestamptz`
    reads). Each row is searched once, whole, for characters to escape; escaping (a
    per-character translation) is the rare path."""
    lines: list[str] = []
    for event_id, (tenant, recorded, *rest) in zip(ids, rows, strict=True):
        fields = [tenant, event_id, recorded.isoformat(), *rest]
        if _SPECIAL.search("".join([f for f in fields if f is not None])):
            fields = [None if f is None else f.translate(_COPY_ESCAPES) for f in fields]
        lines.append("\t".join([_NULL if f is None else f for f in fields]))
    lines.append("")
    return "\n".join(lines).encode()


def _params(
    ids: Sequence[str], rows: Sequence[tuple[Any, ...]], *, raw_detail: bool
) -> list[dict[str, Any]]:
    """Rows as insert parameters. `raw_detail`: `detail` stays the JSON text it is, embedded
    as is when the PostgreSQL flush dumps its one document (`orjson.Fragment`), not parsed
    only to be dumped again; SQLite's JSON column takes the parsed value."""
    return [
        {
            **dict(zip(ROW_COLUMNS, row, strict=True)),
            "id": i,
            "detail": orjson.Fragment(row[-1]) if raw_detail else orjson.loads(row[-1]),
        }
        for i, row in zip(ids, rows, strict=True)
    ]


class AuditLog(ResourceSearch):
    # ---------------------------------------------------------------- writes
    def defer_audit_rows(self, ids: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Add events to this unit of work's deferred inserts (they commit with it, in its
        one-statement flush on PostgreSQL). Each row is `ROW_COLUMNS` in order."""
        self._writable()
        self._own_rows(rows)
        self._pending[A] += _params(ids, rows, raw_detail=self._postgresql)

    def append_audit_rows(self, ids: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
        """Write buffered events now, in bulk (the read-event flusher's path); the caller
        commits. Each row is `ROW_COLUMNS` in order; `ids` names them."""
        self._writable()
        if not rows:
            return 0
        self._own_rows(rows)
        if self._pending:
            self.flush()
        if not self._postgresql:
            self.conn.execute(INSERT[A], _params(ids, rows, raw_detail=False))
            return len(rows)
        driver = self.conn.connection.driver_connection
        assert driver is not None
        try:
            with driver.cursor() as cur, cur.copy(COPY_SQL) as copy:
                copy.write(copy_text(ids, rows))
        except Exception as exc:
            error = self._driver_error(exc, COPY_SQL, None)
            if error is exc:
                raise
            raise error from exc
        return len(rows)

    def _own_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        for row in rows:  # a bug, never data: every row names its tenant (first column)
            if row[0] != self.tenant_id:
                raise ValueError(f"an event of tenant {row[0]!r} in {self.tenant_id!r}")

    # ---------------------------------------------------------------- reads
    def read_audit_event(self, rid: str) -> StoredResource | None:
        where = [*self._audit_scope(), A.c.id == rid]
        row = self._execute(select(A).where(*where)).first()
        return None if row is None else _resource(row)

    def existing_audit_events(self, ids: Iterable[str]) -> set[str]:
        where = [*self._audit_scope(), A.c.id.in_(sorted(ids))]
        return set(self._execute(select(A.c.id).where(*where)).scalars())

    def search(self, query: SearchQuery) -> SearchPage:
        if query.resource_type != AUDIT_EVENT:
            return super().search(query)
        where = self._audit_scope() + [_criterion(c) for c in query.criteria]
        if query.summary_count:
            return SearchPage([], self._count(where, A), None, None)
        return self._page(
            query,
            where,
            table=A,
            columns=tuple(A.c),
            sort_col=SORT_COLUMNS[query.sort_column],
            to_resource=_resource,
        )

    def _audit_scope(self) -> list[ColumnElement[bool]]:
        where = [A.c.tenant_id == self.tenant_id]
        if self.patient_scope is not None:  # a PATIENT sees the events about themselves
            where.append(A.c.patient_id == self.patient_scope)
        return where


def _resource(row: Any) -> StoredResource:
    columns = {c: getattr(row, c) for c in AuditFacts.COLUMNS}
    facts = AuditFacts.with_details(row.detail or {}, **columns)
    return StoredResource(
        AUDIT_EVENT,
        facts.id,
        1,
        facts.recorded,
        to_fhir(facts),
        facts.patient_id,
        facts.recorded,
    )


# ------------------------------------------------------------------ criteria → columns
#: Each token parameter's codings: (system, column). The token index held these values.
TOKENS: dict[str, tuple[tuple[Any, Any], ...]] = {
    "action": (("", A.c.action),),
    "outcome": (("", A.c.outcome),),
    "subtype": ((INTERACTION, A.c.interaction), (ENDPOINT, A.c.endpoint)),
    "agent": ((A.c.agent_system, A.c.agent), (CLIENT_SYSTEM, A.c.client)),
}


def _criterion(c: Criterion) -> ColumnElement[bool]:
    if c.kind == "id":
        return A.c.id.in_(c.values)
    if c.kind == "lastUpdated":
        return and_(*[_point_cond(A.c.recorded, v) for v in c.values])
    if c.kind == "date":  # an instant's indexed range [t, t + 1 µs) is the point t
        return or_(*[_point_cond(A.c.recorded, v) for v in c.values])
    if c.kind == "reference":
        ids = [v.id for v in c.values if v.type in (None, "Patient")]
        return A.c.patient_id.in_(ids) if ids else false()
    if c.kind == "token" and c.name in TOKENS:
        return or_(false(), *[_token(TOKENS[c.name], v) for v in c.values])
    raise ValueError(f"AuditEvent has no search parameter {c.name!r}")


def _token(codings: tuple[tuple[Any, Any], ...], v: TokenValue) -> ColumnElement[bool]:
    """A value matches a coding when the code and (if given) the system are equal, as the
    token index matched them (`system|code`, `code`, `system|`)."""
    matches: list[ColumnElement[bool]] = []
    for system, column in codings:
        parts: list[ColumnElement[bool]] = []
        if v.system is not None:
            if isinstance(system, str):
                if system != v.system:
                    continue
            else:
                parts.append(system == v.system)
        parts.append(column == v.code if v.code is not None else column.is_not(None))
        matches.append(and_(true(), *parts))
    return or_(false(), *matches)
