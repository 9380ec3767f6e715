"""The state every repository operation shares: the connection, the tenant and patient
compartment bound at construction, the deferred inserts and what this unit of work has
read. Reads and writes (repository.py) and search (searching.py) build on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
)
from sqlalchemy.exc import DBAPIError

from app.store.records import StoredResource
from app.store.search.extract import IndexValues
from app.store.statements import (
    DRIVER_SQL,
    FETCH_MANY,
    INSERT,
    PG_FLUSH,
    PG_FLUSH_AUDITED,
    WRITE_ORDER,
    A,
    R,
    driver_statement,
    fetch_many_sql,
)


class StoreConnection:
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
        #: What this unit of work handed out and wrote: the access audit trail's "what"
        #: (app/services/audit.py). Appending is all it costs a read.
        self.accessed: list[StoredResource] = []
        self.written: list[StoredResource] = []

    # ---------------------------------------------------------------- statements
    def _execute(self, statement: Any, params: Any = None) -> Any:
        """Every statement goes through here: pending inserts are written first."""
        if self._pending:
            self.flush()
        return self.conn.execute(statement, params)

    def _driver_rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a prebuilt PostgreSQL statement (`statements.READ_SQL`) run on the psycopg
        connection itself, prepared on the server: SQLAlchemy's execution around one
        statement (parameter processing, result set-up) cost more than the statement
        (docs/performance.md, issue 13). What SQLAlchemy adds that callers rely on is kept:
        pending inserts are written first, `before_cursor_execute` listeners see the
        statement, and driver errors arrive as SQLAlchemy's (a lost connection invalidated,
        so the unit of work answers 503 and the pool replaces it)."""
        if self._pending:
            self.flush()
        conn = self.conn
        if conn.dispatch.before_cursor_execute:
            conn.dispatch.before_cursor_execute(conn, None, sql, params, None, False)
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            with driver.cursor() as cur:
                cur.execute(sql, params, prepare=True)
                return cur.fetchall()
        except Exception as exc:
            error = self._driver_error(exc, sql, params)
            if error is exc:
                raise
            raise error from exc

    def _driver_error(self, exc: Exception, sql: str, params: Any) -> Exception:
        """A psycopg error of a statement run on the driver, as SQLAlchemy would raise it
        (`DBAPIError`, the connection invalidated when it was lost); anything else as is."""
        conn = self.conn
        dialect = conn.dialect
        if not isinstance(exc, dialect.loaded_dbapi.Error):
            return exc
        lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if lost and not conn.invalidated:
            # As SQLAlchemy's own handler does: a lost connection means the server went
            # away, so every pooled connection is suspect (the pool replaces them all).
            conn.engine.pool._invalidate(conn.connection, exc)
            conn.invalidate(exc)
        return DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        )

    def _fetch(self, stmt: Any, binds: dict[str, Any]) -> list[StoredResource]:
        """`RAW_ROW` rows of a prebuilt statement: on PostgreSQL on the driver (its
        precompiled text, `DRIVER_SQL`, or `statements.driver_statement`), elsewhere through
        SQLAlchemy."""
        if not self._postgresql:
            return [self._row(r) for r in self._execute(stmt, binds)]
        sql = DRIVER_SQL.get(stmt)
        query, params = (sql, binds) if sql is not None else driver_statement(stmt, binds)
        return [self._tuple_row(r) for r in self._driver_rows(query, params)]

    def flush(self) -> None:
        """Write the deferred inserts: on PostgreSQL one statement for every table
        (`pg_flush`), elsewhere one executemany per table."""
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(list)
        if self._postgresql:
            (PG_FLUSH_AUDITED if A in pending else PG_FLUSH).execute(self.conn, pending)
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

    def _tuple_row(self, row: tuple[Any, ...]) -> StoredResource:
        """A `RAW_ROW` row as the driver returns it (a tuple in that column order); times
        in UTC as `tables.UTCDateTime` gives them (the driver uses the session's zone).
        Noted as accessed, like `_row`."""
        res_type, rid, version_id, last_updated, patient_id, sort_date, raw = row
        found = StoredResource(
            res_type,
            rid,
            version_id,
            last_updated.astimezone(UTC),
            None,
            patient_id,
            sort_date.astimezone(UTC) if sort_date is not None else None,
            raw,
        )
        self.accessed.append(found)
        return found

    def _row(self, row: Any) -> StoredResource:
        """A row of `RAW_ROW` columns (every read selects them): the document stays text
        until someone reads `.content`. Every resource read passes here, so it is noted as
        accessed."""
        found = StoredResource(
            row.res_type,
            row.id,
            row.version_id,
            row.last_updated,
            None,
            row.patient_id,
            row.sort_date,
            row.raw,
        )
        self.accessed.append(found)
        return found

    def fetch_many(self, refs: Iterable[tuple[str, str]]) -> list[StoredResource]:
        """Resources of any mix of types, in one prebuilt statement (`(type, id) IN …`,
        which PostgreSQL plans as one primary-key probe per pair)."""
        wanted = sorted(set(refs))
        if not wanted:
            return []
        scoped = self.patient_scope is not None
        binds: dict[str, Any] = {"b_tenant": self.tenant_id, "b_patient": self.patient_scope}
        if self._postgresql:  # on the driver, as `Repository.read` (see `_driver_rows`)
            for n, (rtype, rid) in enumerate(wanted):
                binds[f"b_t{n}"], binds[f"b_i{n}"] = rtype, rid
            rows = self._driver_rows(fetch_many_sql(len(wanted), scoped), binds)
            out = [self._tuple_row(r) for r in rows]
        else:
            binds["b_refs"] = wanted
            out = [self._row(r) for r in self._execute(FETCH_MANY[scoped], binds)]
        for found in out:
            self._seen[(found.resource_type, found.id)] = (found, None)
        return out
