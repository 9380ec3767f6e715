"""Planner statistics for the store's tables, where the database does not keep them itself.

PostgreSQL plans by column statistics that ANALYZE collects; autovacuum runs it as tables
change. With autovacuum off (as on the development machines) a database filled after
`migrate` has none, and the planner falls back to fixed guesses: an equality on `tenant_id`
is taken to keep 0.5% of the rows, so `tenant_id = … AND res_type = …` looks like one row
and every index that starts with those two columns ties with the primary key; the smallest
one wins. Measured on a fresh database of 2,300 legacy orders (docs/performance.md): a GET by
id scanned every order of its type through `ix_resources_patient_updated`, and the alerts
of an order were a nested loop over all DetectedIssues twice — minutes, not milliseconds. No
query shape avoids that guess; statistics do.

So the store analyzes its tables when they have grown by more than 10% (and 64 kB) since
their last ANALYZE, autovacuum's rule in pages rather than rows: `migrate` after the
upgrade, bulk loaders after loading, and a serving process every `interval` seconds
(`StatisticsKeeper`) — only while the server's `autovacuum` is off; with it on, this does
nothing. One process at a time (an advisory lock); ANALYZE reads a sample and blocks no
reads or writes.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

#: The store's tables (app/store/tables.py).
TABLES = (
    "resources",
    "resource_versions",
    "sp_token",
    "sp_reference",
    "sp_date",
    "sp_string",
    "conditional_keys",
    "audit_events",
)
#: Stale: the table has grown by more than this many pages (8 kB) plus this fraction of its
#: size at the last ANALYZE (`pg_class.relpages`) — autovacuum's default rule (50 rows +
#: 10%), in pages of the table itself rather than the statistics collector's row counters,
#: which a backend reports up to seconds late.
THRESHOLD_PAGES = 8
SCALE_FACTOR = 0.1
#: pg_try_advisory_lock key: "orders-service analyze" (any constant unique to this use).
LOCK_KEY = 0x0DE5A1A1

_STALE = text(
    """
    SELECT c.relname
      FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(:tables)
       AND pg_relation_size(c.oid) / current_setting('block_size')::int
           > :threshold + (1 + :scale) * greatest(c.relpages, 0)
     ORDER BY c.relname
    """
)


def autovacuum_analyzes(conn: Connection) -> bool:
    """Whether the server keeps statistics itself (autovacuum on, with row counting)."""
    on = conn.execute(
        text(
            "SELECT current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on'"
        )
    ).scalar_one()
    return bool(on)


def stale_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        _STALE, {"tables": list(TABLES), "threshold": THRESHOLD_PAGES, "scale": SCALE_FACTOR}
    )
    return [r.relname for r in rows]


def analyze(conn: Connection, tables: list[str] | tuple[str, ...] = TABLES) -> None:
    """ANALYZE these store tables (names from TABLES only: they are spliced into SQL)."""
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"not store tables: {sorted(unknown)}")
    if tables:
        conn.exec_driver_sql("ANALYZE " + ", ".join(tables))


def analyze_stale(conn: Connection) -> list[str]:
    """ANALYZE the store's tables whose statistics are missing or stale; returns them.
    `conn` must be in autocommit (ANALYZE inside a transaction holds its locks to the end)."""
    if conn.dialect.name != "postgresql":
        return []
    tables = stale_tables(conn)
    analyze(conn, tables)
    return tables


class StatisticsKeeper:
    """A daemon thread of a serving process: `analyze_stale` every `interval` seconds while
    autovacuum is off, in one process at a time."""

    def __init__(self, engine: Engine, interval: float = 15.0) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statistics-keeper", daemon=True)

    def start(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def run_once(self) -> list[str] | None:
        """One round; None when autovacuum keeps the statistics (the keeper then stops)."""
        with self.engine.connect() as conn:
            if autovacuum_analyzes(conn):
                return None
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
                return []
            try:
                return analyze_stale(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                analyzed = self.run_once()
            except Exception:  # a database outage must not end the thread
                log.warning("statistics keeper: round failed", exc_info=True)
                continue
            if analyzed is None:
                return
            if analyzed:
                log.info("statistics keeper: analyzed %s", ", ".join(analyzed))
