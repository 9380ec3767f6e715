"""The yardstick: raw PostgreSQL single-row insert transactions/s and primary-key selects/s.

psycopg 3, one connection per client (at most 8), autocommit so every INSERT is its own
transaction with a durable commit (`synchronous_commit = on`, fsync as the server has it),
a ~1.5 KB JSONB row into a table with a primary key and 3 secondary indexes. Run by the same
closed-loop machinery (benchmarks.load) as the HTTP phases, so the ratios compare like with
like; absolute numbers drift between machines, the ratios much less.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from benchmarks.load import Operation
from benchmarks.seed import LAB_CODES, service_request

MAX_CONNECTIONS = 8
TABLE = "bench_raw"
DDL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    patient_id text NOT NULL,
    status text NOT NULL,
    last_updated timestamptz NOT NULL,
    content jsonb NOT NULL
);
CREATE INDEX ix_{TABLE}_patient_status ON {TABLE} (tenant_id, patient_id, status, id);
CREATE INDEX ix_{TABLE}_updated ON {TABLE} (tenant_id, last_updated);
CREATE INDEX ix_{TABLE}_status ON {TABLE} (tenant_id, status, id);
"""
INSERT = (
    f"INSERT INTO {TABLE} (id, tenant_id, patient_id, status, last_updated, content) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
SELECT = f"SELECT content FROM {TABLE} WHERE id = %s"
ROW_BYTES = 1536


def row_document(n: int) -> dict[str, Any]:
    """A ServiceRequest-shaped document padded to ~1.5 KB of JSON."""
    doc = service_request(f"pat-raw-{n % 1000}", f"enc-raw-{n % 1000}", "active", LAB_CODES[0], n)
    size = len(orjson.dumps(doc))
    if size < ROW_BYTES:
        doc["note"].append({"text": "x" * (ROW_BYTES - size - 12)})
    return doc


def _connect(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    set_json_dumps(orjson.dumps, conn)  # type: ignore[arg-type]
    set_json_loads(orjson.loads, conn)
    conn.execute("SET synchronous_commit = on")
    return conn


class RawPostgres:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.ids: list[str] = []
        self._lock = threading.Lock()
        self._doc = row_document(0)
        self._conns: list[psycopg.Connection[Any]] = []

    def _conn(self) -> psycopg.Connection[Any]:
        conn = _connect(self.dsn)
        with self._lock:
            self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    def prepare(self, prefill: int) -> None:
        """Create the table and prefill it, so inserts and selects hit a table of realistic
        size (the same order as the seeded resource table) rather than an empty one."""
        self.ids.clear()  # a second prepare (the end-of-run insert phase) starts a new table
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(DDL)
            set_json_dumps(orjson.dumps, conn)  # type: ignore[arg-type]
            now = datetime.now(UTC)
            rows = []
            for n in range(prefill):
                rid = str(uuid.uuid4())
                self.ids.append(rid)
                rows.append((rid, "bench", f"pat-{n % 1000}", "active", now, Jsonb(self._doc)))
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(INSERT, rows)
            conn.execute(f"VACUUM ANALYZE {TABLE}")

    def insert_client(self, i: int) -> Operation:
        conn = self._conn()
        doc = Jsonb(self._doc)
        rng = random.Random(i)
        mine: list[str] = []

        def op() -> tuple[bool, str, str | None]:
            rid = str(uuid.uuid4())
            conn.execute(
                INSERT,
                (rid, "bench", f"pat-{rng.randrange(1000)}", "active", datetime.now(UTC), doc),
            )
            mine.append(rid)
            if len(mine) >= 1000:
                with self._lock:
                    self.ids.extend(mine)
                mine.clear()
            return True, "INSERT", None

        return op

    def select_client(self, i: int) -> Operation:
        conn = self._conn()
        rng = random.Random(1000 + i)
        ids = self.ids

        def op() -> tuple[bool, str, str | None]:
            row = conn.execute(SELECT, (ids[rng.randrange(len(ids))],)).fetchone()
            return (row is not None), "SELECT", None if row else "row not found"

        return op
