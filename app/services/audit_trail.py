"""The buffer that writes read AuditEvents off the request path, in batches.

A read records its events here (a list append under a lock) and returns; a daemon thread
per process writes what has gathered every `flush_seconds` (default 1 s): batches of up to
`BATCH` events, each one transaction (`COPY` per tenant into the trail's narrow table on
PostgreSQL, app/store/audit_log.py). The loss window is bounded and documented
(docs/operations.md "Audit trail"):

- a worker killed without a chance to exit (SIGKILL, OOM, power) loses at most the reads of
  the last `flush_seconds` it served; a clean exit (gunicorn's graceful stop, SIGTERM) flushes
  first (`atexit`);
- while the database is unreachable the records wait in memory, at most `max_buffered`
  (default 10,000) per process; beyond that the oldest are dropped and counted
  (`orders_audit_events_dropped_total`), so an outage cannot exhaust memory.

Writes never come here: their events are part of the write's own transaction
(app/services/audit.py `on_success`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import defaultdict, deque

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import metrics
from app.db import Database
from app.services.audit import AccessRecord, write_records
from app.store import Repository

log = logging.getLogger("app.audit")
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_MAX_BUFFERED = 10_000
BATCH = 500


class AuditTrail:
    def __init__(
        self,
        database: Database,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self._database = database
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._buffer: deque[AccessRecord] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._pid: int | None = None  # the process whose thread runs (gunicorn forks)
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # taken from the buffer, not yet committed

    # ------------------------------------------------------------------ request path
    def submit(self, records: list[AccessRecord]) -> None:
        if not records:
            return
        dropped = 0
        with self._lock:
            self._buffer.extend(records)
            while len(self._buffer) > self.max_buffered:
                self._buffer.popleft()
                dropped += 1
        if dropped:
            metrics.audit_dropped(dropped)
        metrics.audit_buffered(len(self._buffer))
        if self._pid != os.getpid():
            self._start()
        if len(self._buffer) >= BATCH:
            self._wake.set()

    def pending(self) -> int:
        """Records not yet committed: buffered, or in a batch being written."""
        return len(self._buffer) + self._in_flight

    # ------------------------------------------------------------------ the writer
    def flush(self) -> int:
        """Write everything buffered now; returns how many events were written. On a
        database error the records go back to the front of the buffer (bounded)."""
        written = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    batch = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
                    self._in_flight = len(batch)
                metrics.audit_buffered(len(self._buffer))
                if not batch:
                    return written
                try:
                    written += self._write(batch)
                except (DBAPIError, PoolTimeout, OSError) as exc:
                    log.warning("audit flush failed, %d events kept: %s", len(batch), exc)
                    with self._lock:
                        room = max(0, self.max_buffered - len(self._buffer))
                        self._buffer.extendleft(reversed(batch[:room]))
                        self._in_flight = 0
                    if len(batch) > room:
                        metrics.audit_dropped(len(batch) - room)
                    return written
                finally:
                    self._in_flight = 0

    def _write(self, batch: list[AccessRecord]) -> int:
        by_tenant: dict[str, list[AccessRecord]] = defaultdict(list)
        for record in batch:
            by_tenant[record.tenant_id].append(record)
        n = 0
        with self._database.connect() as conn, conn.begin():  # one transaction, all tenants
            for tenant, records in by_tenant.items():
                n += write_records(Repository(conn, tenant), records)
        metrics.audit_written(n)
        return n

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="audit-flush", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the thread must outlive any one bad batch
                log.exception("audit flush failed")

    def close(self) -> None:
        """Flush what is left (a clean exit loses nothing) and stop the thread."""
        self._stopped = True
        self._wake.set()
        try:
            self.flush()
        except Exception:
            log.exception("audit flush at exit failed")
