"""AppError → OperationOutcome, and the FHIR face's one status table.

The FHIR face differs from the domain default in one place: a stale `If-Match` is 412
(https://hl7.org/fhir/R4/http.html#concurrency), with OPTIMISTIC_LOCK_CONFLICT in the outcome.
"""

from __future__ import annotations

from typing import Any

from app.errors import AppError, Issue, VersionConflict
from app.services.alerts import RULE_SYSTEM

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


ALERT_SEVERITY = {"hard-stop": "error", "warning": "warning", "info": "information"}


def _alert_issue(alert: dict[str, Any]) -> dict[str, Any]:
    """A CDS alert carried by an error (e.g. CDS_HARD_STOP) as its own issue."""
    issue: dict[str, Any] = {
        "severity": ALERT_SEVERITY.get(str(alert.get("level")), "warning"),
        "code": "business-rule",
        "details": {
            "coding": [{"system": RULE_SYSTEM, "code": str(alert.get("ruleId"))}],
            "text": str(alert.get("message")),
        },
        "diagnostics": str(alert.get("message")),
    }
    if alert.get("alertId"):
        issue["expression"] = [f"DetectedIssue/{alert['alertId']}"]
    return issue


def operation_outcome(error: AppError) -> dict[str, Any]:
    issues = [_issue(error, None)] + [_issue(error, i) for i in error.issues]
    if error.issues:
        issues = issues[1:]
    if isinstance(error.details, list):
        issues += [_alert_issue(a) for a in error.details if isinstance(a, dict) and "ruleId" in a]
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
