"""The buffer that writes read AuditEvents off the request path, in batches.

A read records its events here (each made the row it will be stored as, `event_row`, and
appended under a lock) and returns; a daemon thread per process writes what was buffered
every `flush_seconds` (default 1 s): batches of up to `BATCH` events, each one transaction
(`COPY` per tenant into the trail's narrow table on PostgreSQL, app/store/audit_log.py).
The loss window is bounded and documented (docs/operations.md "Audit trail"):

- a worker killed without a chance to exit (SIGKILL, OOM, power) loses at most the reads of
  the last `flush_seconds` it served; a clean exit (gunicorn's graceful stop, SIGTERM) flushes
  first (`atexit`);
- `orders_audit_events_buffered` is set by the flusher (each pass, at least every
  `flush_seconds`), not by each read;
- while the database is unreachable the records wait in memory, at most `max_buffered`
  (default 10,000) per process; beyond that the oldest are dropped and counted
  (`orders_audit_events_dropped_total`), so an outage cannot exhaust memory;
- a batch the database refuses as data (a value too long for its column, say) is split in
  halves until the refused events are alone: those are dropped, counted and logged, and
  the rest written; one bad event must not hold up, and in the end lose, its batch.

Writes never come here: their events are part of the write's own transaction
(app/services/audit.py `on_success`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import defaultdict, deque

from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import metrics
from app.db import Database
from app.services.audit import AccessRecord, EventRow, event_row, write_rows
from app.store import Repository

log = logging.getLogger("app.audit")
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_MAX_BUFFERED = 10_000
#: Events per transaction: a busy worker's second of reads in one `COPY`, so the
#: transaction's own round trips are shared by hundreds of events.
BATCH = 2000


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
        self._buffer: deque[EventRow] = deque()
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
        rows = [event_row(r) for r in records]
        dropped = 0
        with self._lock:
            self._buffer.extend(rows)
            while len(self._buffer) > self.max_buffered:
                self._buffer.popleft()
                dropped += 1
        if dropped:
            metrics.audit_dropped(dropped)
        if self._pid != os.getpid():
            self._start()
        if len(self._buffer) >= BATCH:
            self._wake.set()

    def pending(self) -> int:
        """Records not yet committed: buffered, or in a batch being written."""
        return len(self._buffer) + self._in_flight

    # ------------------------------------------------------------------ the writer
    def flush(self) -> int:
        """Write what is buffered now (not what arrives meanwhile: under load each batch
        would then be the few records of the previous one's round trips, and a transaction
        per handful costs more than the rows); returns how many events were written. When
        the database is unavailable the records not yet written go back to the front of the
        buffer (bounded); events it refuses as data are dropped alone (`_write_split`)."""
        written = 0
        with self._flush_lock:
            with self._lock:
                todo = len(self._buffer)
            while True:
                with self._lock:
                    size = min(BATCH, todo, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(size)]
                    self._in_flight = len(batch)
                    todo -= len(batch)
                metrics.audit_buffered(len(self._buffer))
                if not batch:
                    return written
                try:
                    written += self._write_split(batch)
                except _Unwritten as stop:
                    written += stop.written
                    kept = stop.rows
                    log.warning("audit flush failed, %d events kept: %s", len(kept), stop.cause)
                    with self._lock:
                        room = max(0, self.max_buffered - len(self._buffer))
                        self._buffer.extendleft(reversed(kept[:room]))
                        self._in_flight = 0
                    if len(kept) > room:
                        metrics.audit_dropped(len(kept) - room)
                    return written
                finally:
                    self._in_flight = 0

    def _write_split(self, batch: list[EventRow]) -> int:
        """Write a batch; if the database refuses it as data, its halves, and so on: only
        the events it refuses alone are dropped. Stops at the first other database error
        (`_Unwritten`, with the rows not yet written: what was committed stays written)."""
        parts, written = [batch], 0
        while parts:
            part = parts.pop()
            try:
                written += self._write(part)
            except DataError as exc:
                if len(part) > 1:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]  # the first half is written first
                    continue
                log.error("audit event dropped, the database refused it: %s", _reason(exc))
                metrics.audit_dropped(1)
            except (DBAPIError, PoolTimeout, OSError) as exc:
                left = [row for rest in reversed(parts) for row in rest]
                raise _Unwritten(written, part + left, exc) from exc
        return written

    def _write(self, batch: list[EventRow]) -> int:
        by_tenant: dict[str, list[EventRow]] = defaultdict(list)
        for row in batch:
            by_tenant[row[0]].append(row)
        n = 0
        with self._database.connect() as conn, conn.begin():  # one transaction, all tenants
            for tenant, rows in by_tenant.items():
                n += write_rows(Repository(conn, tenant), rows)
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


def _reason(exc: DataError) -> str:
    """The database's reason without its CONTEXT line, which quotes the refused value (a
    patient id or a user's subject has no place in an operator's log)."""
    diag = getattr(exc.orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    state = getattr(exc.orig, "sqlstate", None)
    return f"{state} {primary}" if primary else type(exc.orig).__name__


class _Unwritten(Exception):
    """The database became unavailable part-way through a batch."""

    def __init__(self, written: int, rows: list[EventRow], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.written, self.rows, self.cause = written, rows, cause
