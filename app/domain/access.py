"""Who may do what (DESIGN §3 role table). Every face applies these same rules."""

from __future__ import annotations

from enum import StrEnum

from app.auth import Principal
from app.errors import Forbidden


class Action(StrEnum):
    READ = "read"
    ORDER_WRITE = "order-write"
    HOLD_RESUME = "hold-resume"
    CORRECTION = "correction"
    TASK_WRITE = "task-write"
    CLINICAL_DATA_WRITE = "clinical-data-write"
    DEFINITION_WRITE = "definition-write"
    CDS_CALL = "cds-call"


ROLES: dict[Action, frozenset[str]] = {
    Action.READ: frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"}),
    Action.ORDER_WRITE: frozenset({"CLINICIAN", "PRESCRIBER"}),
    Action.HOLD_RESUME: frozenset({"CLINICIAN"}),
    Action.CORRECTION: frozenset({"CLINICIAN", "ADMIN"}),
    Action.TASK_WRITE: frozenset({"CLINICIAN", "NURSE", "ADMIN"}),
    Action.CLINICAL_DATA_WRITE: frozenset({"ADMIN"}),
    Action.DEFINITION_WRITE: frozenset({"CLINICIAN", "ADMIN"}),
    Action.CDS_CALL: frozenset({"CLINICIAN", "PRESCRIBER", "NURSE", "ADMIN"}),
}

#: Which action a plain create/update of each resource type is.
WRITE_ACTION: dict[str, Action] = {
    "ServiceRequest": Action.ORDER_WRITE,
    "MedicationRequest": Action.ORDER_WRITE,
    "NutritionOrder": Action.ORDER_WRITE,
    "RequestGroup": Action.ORDER_WRITE,
    "Task": Action.TASK_WRITE,
    "Patient": Action.CLINICAL_DATA_WRITE,
    "Encounter": Action.CLINICAL_DATA_WRITE,
    "AllergyIntolerance": Action.CLINICAL_DATA_WRITE,
    "PlanDefinition": Action.DEFINITION_WRITE,
    "ActivityDefinition": Action.DEFINITION_WRITE,
}


def require(principal: Principal, action: Action) -> None:
    if not principal.roles.intersection(ROLES[action]):
        raise Forbidden(f"Your roles do not allow {action.value}")


def write_action(resource_type: str) -> Action:
    """Types without a write action (DetectedIssue, Provenance) are written by the server only."""
    action = WRITE_ACTION.get(resource_type)
    if action is None:
        raise Forbidden(f"{resource_type} is written by the server only")
    return action
