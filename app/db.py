"""Engine and connections. Built by `Runtime.build` (app/runtime.py) when the app factory
runs, never at import time.

Units of work run on plain Core connections (not an ORM Session): the repository issues Core
statements only, and the Session's state machine around each one was a measurable share of
every request (docs/performance.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

from app.settings import Settings


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
        "future": True,
    }
    if url.startswith("sqlite"):
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers proceed during a write; busy_timeout turns lock contention
            # into waiting instead of "database is locked" errors.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions defer it).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front, so a read-then-write use case
            # cannot deadlock against another writer (SQLite has one writer at a time).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.update(
        pool_size=int(str(settings.extra.get("pool_size", 10))),
        max_overflow=int(str(settings.extra.get("max_overflow", 10))),
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, float(str(settings.extra.get("ping_after_idle_seconds", 5))))
    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pre-ping only connections that sat idle in the pool for a while.

    `pool_pre_ping` costs a round trip on every checkout (a GET by id is one SELECT). Under
    load connections are reused within milliseconds and a dead one is the rare case: the
    disconnect it raises invalidates the whole pool and the request answers 503 with
    Retry-After. After an idle spell (a database restart at night) the first checkout pings,
    and a dead connection is replaced before any request sees it — SQLAlchemy's "custom
    pessimistic ping" recipe: raising DisconnectionError makes the pool retry with a fresh one.
    """

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        last = record.info.get("checked_in_at")
        if last is not None and time.monotonic() - last > idle_seconds:
            try:
                cur = dbapi_conn.cursor()
                cur.execute("SELECT 1")
                cur.close()
                dbapi_conn.rollback()  # the ping opened a transaction; hand over a clean one
            except Exception as exc:
                raise DisconnectionError() from exc

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()


class Database:
    """Hands units of work their connection. On PostgreSQL, read-only use cases run in
    autocommit: no BEGIN/COMMIT round trips around a single SELECT (each statement still
    sees a consistent snapshot of its own)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.autocommit_reads = engine.dialect.name == "postgresql"

    def connect(self, *, read_only: bool = False) -> Connection:
        if read_only and self.autocommit_reads:
            return self._reads.connect()
        return self.engine.connect()
