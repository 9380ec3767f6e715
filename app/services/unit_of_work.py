"""One database transaction per use case, with the repository bound to the caller's tenant.

The caller owns the transaction (cosmicpython unit of work): `with UnitOfWork(...) as uow:`
commits on success and rolls back on any exception, so a request writes all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from types import TracebackType

from sqlalchemy import Connection, RootTransaction
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.auth import Principal
from app.db import Database
from app.errors import AppError, Issue, ServiceUnavailable, ValidationFailed, VersionConflict
from app.services import audit
from app.services.outbox import Outbox, index_for
from app.store import EventStore, Repository


class UnitOfWork:
    """`read_only` use cases (GET) may run without a transaction (see `Database`); the
    repository then refuses writes, so a read path can never half-write."""

    def __init__(self, database: Database, principal: Principal, *, read_only: bool = False):
        self._database = database
        self.principal = principal
        self.read_only = read_only
        self.conn: Connection | None = None
        self._tx: RootTransaction | None = None
        self.repo: Repository
        self.outbox: Outbox
        #: Resources a transaction Bundle is about to create: references to them count as
        #: resolvable even before they are written.
        self.pending: set[tuple[str, str]] = set()
        #: A FHIR transaction is all or nothing: no error keeps what its entries wrote, not
        #: even one that keeps a single request's findings (a blocked activation's alerts).
        self.all_or_nothing = False
        #: Run once the transaction committed (e.g. forget a cached list of subscriptions).
        self.after_commit: list[Callable[[], None]] = []

    def __enter__(self) -> UnitOfWork:
        try:
            self.conn = self._database.connect(read_only=self.read_only)
        except (DBAPIError, PoolTimeout) as exc:
            raise _translate(exc) or ServiceUnavailable() from exc
        try:
            self._tx = self.conn.begin()  # SQLite: BEGIN IMMEDIATE may time out on the lock
        except DBAPIError as exc:
            self.conn.close()
            raise _translate(exc) or ServiceUnavailable() from exc
        # Every statement of a limited token is bound to its patient's compartment
        # (Principal.compartment: PATIENT-only reads, SMART patient/ scopes).
        self.repo = Repository(
            self.conn,
            self.principal.tenant_id,
            patient_scope=self.principal.compartment,
            read_only=self.read_only,
        )
        self.outbox = Outbox(
            EventStore(self.conn, self.principal.tenant_id), index_for(self._database)
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.conn is not None and self._tx is not None
        try:
            keeps = isinstance(exc, AppError) and exc.keeps_writes and not self.all_or_nothing
            if exc_type is None or keeps:
                try:
                    # Who read or wrote which patient's data: a write's AuditEvents join
                    # its transaction, a read's go to the buffer (app/services/audit.py).
                    audit.on_success(self, exc)
                    # The repository defers its inserts to here (one statement per table).
                    self.repo.flush()
                    # Events of this transaction's changes, in this transaction (outbox).
                    self.outbox.flush()
                    self._tx.commit()
                    for hook in self.after_commit:
                        hook()
                except (DBAPIError, PoolTimeout) as err:
                    translated = _translate(err)
                    if translated is None:
                        raise
                    raise translated from err
            else:
                # If the connection is gone nothing was committed: the original error stands.
                with suppress(DBAPIError):
                    self._tx.rollback()
                if exc is not None:
                    audit.on_failure(self, exc)
        finally:
            self.conn.close()  # rolls back whatever a failed commit left open
        if isinstance(exc, DBAPIError | PoolTimeout):
            translated = _translate(exc)
            if translated is not None:
                raise translated from exc


def _translate(exc: DBAPIError | PoolTimeout) -> AppError | None:
    """Database errors a client can act on; anything else stays a 500."""
    if isinstance(exc, IntegrityError):
        # Two writers raced for the same id (two PUTs creating one order, say): the loser
        # wrote nothing and learns that the resource exists now.
        return VersionConflict("A concurrent request wrote the same resource; re-read and retry")
    if isinstance(exc, DataError):
        # The database refused a value (e.g. a NUL character PostgreSQL cannot store):
        # the client's data, not the server, is at fault, and nothing was written.
        return ValidationFailed(
            "A value in the request cannot be stored",
            issues=[Issue("A value in the request cannot be stored")],
        )
    if isinstance(exc, OperationalError | PoolTimeout):
        return ServiceUnavailable()
    if exc.connection_invalidated:
        return ServiceUnavailable()
    return None
