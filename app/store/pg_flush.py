"""The deferred inserts of a unit of work as ONE PostgreSQL statement with ONE parameter.

A write stores a handful of rows in up to six tables (the order, its version, its search
index rows, a Provenance's, alerts'). Sent as one executemany per table they cost ~27% of a
write's server CPU, nearly all of it Python in SQLAlchemy and psycopg around each table's
batch; sent as column arrays, psycopg's (Python) array quoting took most of that
(docs/performance.md). Here every pending row of every table is dumped by orjson into one
JSON document, `{"resources": [{column: value, …}, …], "sp_token": […], …}`, and one fixed
statement spreads it into the tables with `jsonb_populate_recordset` in data-modifying CTEs:

- one round trip, one statement and one bound value however many tables and rows;
- the statement text never changes, so psycopg prepares it on the server after a few
  executions (no parse or plan per write);
- the Python side is a single `orjson.dumps` (C), datetimes included (RFC 3339 with offset).

PostgreSQL converts each JSON value with the column type's input function and typmod,
exactly as for a plain INSERT: a too-long `varchar(n)` is "value too long" and a NUL
(`\\u0000`) is refused by jsonb, both DataErrors (400); a duplicate key is an IntegrityError
(409) — raised through SQLAlchemy and mapped by the unit of work. Missing keys are NULL.
SQLite keeps the per-table executemany (`Repository.flush`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Table


class FlushStatement:
    """The single INSERT statement for a fixed list of tables."""

    def __init__(self, tables: Sequence[Table]):
        self.tables = tuple(tables)
        #: Plain `str` names: SQLAlchemy's are a str subclass, which orjson refuses as keys.
        self.names = {t: str(t.name) for t in self.tables}
        inserts = [
            f"INSERT INTO {t.name} ({', '.join(c.name for c in t.columns)}) "
            f"SELECT {', '.join('r.' + c.name for c in t.columns)} "
            f"FROM jsonb_populate_recordset(NULL::{t.name}, (SELECT j -> '{t.name}' FROM d)) AS r"
            for t in self.tables
        ]
        ctes = ["d AS MATERIALIZED (SELECT CAST(%s AS jsonb) AS j)"]
        ctes += [f"w{i} AS ({sql})" for i, sql in enumerate(inserts[:-1])]
        self.sql = f"WITH {', '.join(ctes)} {inserts[-1]}"

    def document(self, pending: Mapping[Table, list[dict[str, Any]]]) -> str:
        """The rows of every table, keyed by table name (column name → value per row)."""
        names = self.names
        return orjson.dumps({names[t]: rows for t, rows in pending.items() if rows}).decode()

    def execute(self, conn: Connection, pending: Mapping[Table, list[dict[str, Any]]]) -> None:
        conn.exec_driver_sql(self.sql, (self.document(pending),))
