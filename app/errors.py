"""Typed domain errors. Each carries its code, HTTP status and FHIR issue type as data.

Faces map these to their own error shapes in one place each: `app/fhir/outcomes.py`
(OperationOutcome) and the legacy face (`{"error": {...}}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One problem with a request; `path` is a FHIRPath-like expression when known."""

    message: str
    path: str | None = None
    severity: str = "error"
    code: str = "invalid"


class AppError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    fhir_code: ClassVar[str] = "exception"
    #: Commit the unit of work's writes even though the request fails (e.g. alerts found by
    #: a blocked activation are stored, so the client can fetch and act on them).
    keeps_writes: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.issues = issues or []
        self.headers = headers or {}


class ValidationFailed(AppError):
    code = "VALIDATION_ERROR"
    status = 400
    fhir_code = "invalid"


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    status = 401
    fhir_code = "login"


class TenantRequired(AppError):
    code = "TENANT_REQUIRED"
    status = 400
    fhir_code = "required"


class TenantForbidden(AppError):
    code = "TENANT_FORBIDDEN"
    status = 403
    fhir_code = "forbidden"


class ModuleNotEntitled(AppError):
    code = "MODULE_NOT_ENTITLED"
    status = 403
    fhir_code = "forbidden"


class Forbidden(AppError):
    code = "FORBIDDEN"
    status = 403
    fhir_code = "forbidden"


class ResourceNotFound(AppError):
    code = "RESOURCE_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class VersionConflict(AppError):
    """The version sent is not the current one; nothing was written (DESIGN §5)."""

    code = "OPTIMISTIC_LOCK_CONFLICT"
    status = 409
    fhir_code = "conflict"


class MultipleMatches(AppError):
    """A conditional interaction matched more than one resource (FHIR: 412)."""

    code = "MULTIPLE_MATCHES"
    status = 412
    fhir_code = "multiple-matches"


class MethodNotAllowed(AppError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    fhir_code = "not-supported"


class NotAcceptable(AppError):
    code = "NOT_ACCEPTABLE"
    status = 406
    fhir_code = "not-supported"


class UnsupportedMediaType(AppError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    fhir_code = "not-supported"


class PayloadTooLarge(AppError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    fhir_code = "too-costly"


class ServiceUnavailable(AppError):
    code = "SERVICE_UNAVAILABLE"
    status = 503
    fhir_code = "transient"

    def __init__(self, message: str = "A backing service is unavailable; retry shortly") -> None:
        super().__init__(message, headers={"Retry-After": "5"})


class RouteNotFound(AppError):
    code = "NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class OrderTerminalState(AppError):
    """The order is completed, cancelled or entered-in-error (DESIGN §5)."""

    code = "ORDER_TERMINAL_STATE"
    status = 409
    fhir_code = "business-rule"


class InvalidStateTransition(AppError):
    code = "INVALID_STATE_TRANSITION"
    status = 409
    fhir_code = "business-rule"


class PatientNotFound(AppError):
    code = "PATIENT_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class PatientDeceased(AppError):
    code = "PATIENT_DECEASED"
    status = 422
    fhir_code = "business-rule"


class EncounterNotFound(AppError):
    code = "ENCOUNTER_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class EncounterInactive(AppError):
    code = "ENCOUNTER_INACTIVE"
    status = 422
    fhir_code = "business-rule"


class OrderNotFound(AppError):
    code = "ORDER_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class CdsAlertNotFound(AppError):
    code = "CDS_ALERT_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class CdsServiceNotFound(AppError):
    """`POST /cds-services/{id}` for a service the discovery document does not list."""

    code = "CDS_SERVICE_NOT_FOUND"
    status = 404
    fhir_code = "not-found"


class CdsHardStop(AppError):
    """A hard-stop alert blocks the order. Alerts found while checking are kept (DESIGN §6)."""

    code = "CDS_HARD_STOP"
    status = 422
    fhir_code = "business-rule"
    keeps_writes = True


class CdsWarningUnacknowledged(AppError):
    code = "CDS_WARNING_UNACKNOWLEDGED"
    status = 422
    fhir_code = "business-rule"
    keeps_writes = True


class CdsHardStopNotAcknowledgeable(AppError):
    code = "CDS_HARD_STOP"
    status = 422
    fhir_code = "business-rule"


class DuplicateMutation(AppError):
    """The clientMutationId was used with another payload, or its twin is still running."""

    code = "DUPLICATE_MUTATION"
    status = 409
    fhir_code = "duplicate"


class OrderSetNotFound(ResourceNotFound):
    """The order set (PlanDefinition) does not exist in the caller's tenant."""

    code = "ORDER_SET_NOT_FOUND"


class OrderSetHardStop(CdsHardStop):
    """A template of an order set hit a hard-stop: the whole instantiation is refused and,
    unlike a blocked activation, nothing found on the way is kept (all-or-nothing)."""

    keeps_writes = False


class OfflineCreateNotAllowed(AppError):
    """Medication and referral orders and order-set instantiation cannot come from an
    offline queue (DESIGN §7)."""

    code = "OFFLINE_CREATE_NOT_ALLOWED"
    status = 422
    fhir_code = "business-rule"


class PrefetchUnavailable(AppError):
    """CDS Hooks: data the service needs is neither prefetched nor in the local store."""

    code = "PREFETCH_UNAVAILABLE"
    status = 412
    fhir_code = "not-found"
