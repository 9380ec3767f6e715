"""One database transaction per use case, with the repository bound to the caller's tenant.

The caller owns the transaction (cosmicpython unit of work): `with UnitOfWork(...) as uow:`
commits on success and rolls back on any exception, so a request writes all or nothing.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from app.auth import Principal
from app.errors import AppError, Issue, ServiceUnavailable, ValidationFailed
from app.fhir.repository import Repository


class UnitOfWork:
    def __init__(self, session_factory: sessionmaker[Session], principal: Principal) -> None:
        self._factory = session_factory
        self.principal = principal
        self.session: Session | None = None
        self.repo: Repository
        #: Resources a transaction Bundle is about to create: references to them count as
        #: resolvable even before they are written.
        self.pending: set[tuple[str, str]] = set()

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.session.begin()
        scope = self.principal.patient_id if self.principal.is_patient_only else None
        if self.principal.is_patient_only and scope is None:
            scope = "\x00no-patient"  # a PATIENT token without a patient id sees nothing
        self.repo = Repository(self.session, self.principal.tenant_id, patient_scope=scope)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.session is not None
        try:
            if exc_type is None or (isinstance(exc, AppError) and exc.keeps_writes):
                try:
                    self.session.commit()
                except (OperationalError, PoolTimeout) as err:
                    raise ServiceUnavailable() from err
            else:
                self.session.rollback()
        finally:
            self.session.close()
        if isinstance(exc, DataError):
            # The database refused a value (e.g. a NUL character PostgreSQL cannot store):
            # the client's data, not the server, is at fault, and nothing was written.
            raise ValidationFailed(
                "A value in the request cannot be stored",
                issues=[Issue("A value in the request cannot be stored")],
            ) from exc
        if isinstance(exc, (OperationalError, PoolTimeout)) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            raise ServiceUnavailable() from exc
