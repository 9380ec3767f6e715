"""The deferred inserts of a unit of work as ONE PostgreSQL statement.

A write stores a handful of rows in up to six tables (the order, its version, its search
index rows, a Provenance's, alerts'). Sent as one executemany per table they cost ~27% of a
write's server CPU, nearly all of it Python in SQLAlchemy and psycopg around each table's
batch (docs/performance.md). Here every table's rows travel as column arrays and are
`unnest`ed into their tables by data-modifying CTEs of a single fixed statement:

- one round trip and one statement however many tables and rows;
- the statement text never changes, so psycopg prepares it on the server after a few
  executions (no parse or plan per write);
- JSON documents are dumped once by orjson and cast to `jsonb` by PostgreSQL.

Types and lengths are checked by PostgreSQL exactly as for a plain INSERT (the text arrays
are assignment-cast into the `varchar(n)` columns), so a too-long or NUL-bearing value is a
DataError and a duplicate key an IntegrityError, both raised through SQLAlchemy and mapped
by the unit of work. SQLite keeps the per-table executemany (`Repository.flush`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Integer, Table

from app.fhir.storage import UTCDateTime


def _sql_type(table: Table, name: str) -> str:
    col_type = table.c[name].type
    if isinstance(col_type, JSON):
        return "text"  # dumped by orjson here, cast to jsonb in the statement
    if isinstance(col_type, Integer):
        return "int4"
    if isinstance(col_type, UTCDateTime):
        return "timestamptz"
    return "text"


class FlushStatement:
    """The single INSERT statement for a fixed list of tables, and how to fill its arrays."""

    def __init__(self, tables: Sequence[Table]):
        self.tables = tuple(tables)
        self.columns = {t: tuple(c.name for c in t.columns) for t in self.tables}
        self.json_columns = {
            t: frozenset(c.name for c in t.columns if isinstance(c.type, JSON)) for t in self.tables
        }
        inserts = []
        for table in self.tables:
            cols = self.columns[table]
            arrays = ", ".join(f"%s::{_sql_type(table, c)}[]" for c in cols)
            picked = ", ".join(
                f"u.{c}::jsonb" if c in self.json_columns[table] else f"u.{c}" for c in cols
            )
            names = ", ".join(cols)
            inserts.append(
                f"INSERT INTO {table.name} ({names}) "
                f"SELECT {picked} FROM unnest({arrays}) AS u({names})"
            )
        ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(inserts[:-1]))
        self.sql = (f"WITH {ctes} " if ctes else "") + inserts[-1]

    def params(self, pending: Mapping[Table, list[dict[str, Any]]]) -> tuple[Any, ...]:
        """One array per column of every table, in statement order (empty for a table with
        no rows: its INSERT then writes nothing)."""
        out: list[Any] = []
        for table in self.tables:
            rows = pending.get(table) or ()
            json_cols = self.json_columns[table]
            for col in self.columns[table]:
                if col in json_cols:
                    out.append([orjson.dumps(r[col]).decode() for r in rows])
                else:
                    out.append([r[col] for r in rows])
        return tuple(out)

    def execute(self, conn: Connection, pending: Mapping[Table, list[dict[str, Any]]]) -> None:
        conn.exec_driver_sql(self.sql, self.params(pending))
