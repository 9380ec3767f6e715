"""AppError → OperationOutcome, and the FHIR face's one status table.

The FHIR face differs from the domain default in one place: a stale `If-Match` is 412
(https://hl7.org/fhir/R4/http.html#concurrency), with OPTIMISTIC_LOCK_CONFLICT in the outcome.
"""

from __future__ import annotations

from typing import Any

from app.errors import AppError, Issue, VersionConflict

ERROR_CODE_SYSTEM = "urn:orders-service:error-code"

#: FHIR-specific HTTP statuses for errors whose default status differs on this face.
FHIR_STATUS: dict[type[AppError], int] = {VersionConflict: 412}


def status_for(error: AppError) -> int:
    for cls in type(error).__mro__:
        if cls in FHIR_STATUS:
            return FHIR_STATUS[cls]
    return error.status


def _issue(error: AppError, issue: Issue | None) -> dict[str, Any]:
    message = issue.message if issue else error.message
    out: dict[str, Any] = {
        "severity": issue.severity if issue else "error",
        "code": (issue.code if issue and issue.code != "invalid" else error.fhir_code),
        "details": {
            "coding": [{"system": ERROR_CODE_SYSTEM, "code": error.code}],
            "text": message,
        },
        "diagnostics": message,
    }
    if issue and issue.path:
        out["expression"] = [issue.path]
    return out


def operation_outcome(error: AppError) -> dict[str, Any]:
    issues = [_issue(error, i) for i in error.issues] or [_issue(error, None)]
    return {"resourceType": "OperationOutcome", "issue": issues}


def informational(message: str, warnings: list[Issue] | None = None) -> dict[str, Any]:
    issues: list[dict[str, Any]] = [
        {
            "severity": w.severity,
            "code": w.code,
            "diagnostics": w.message,
            **({"expression": [w.path]} if w.path else {}),
        }
        for w in (warnings or [])
    ]
    issues.append({"severity": "information", "code": "informational", "diagnostics": message})
    return {"resourceType": "OperationOutcome", "issue": issues}
