"""Who may do what (DESIGN §3 role table). Every face applies these same rules."""

from __future__ import annotations

from enum import StrEnum

from app.auth import Principal
from app.errors import Forbidden


class Permission(StrEnum):
    READ = "read"
    ORDER_WRITE = "order-write"
    HOLD_RESUME = "hold-resume"
    CORRECTION = "correction"
    TASK_WRITE = "task-write"
    CLINICAL_DATA_WRITE = "clinical-data-write"
    DEFINITION_WRITE = "definition-write"
    FORMULARY_WRITE = "formulary-write"
    CDS_CALL = "cds-call"
    SUBSCRIPTION_MANAGE = "subscription-manage"


ROLES: dict[Permission, frozenset[str]] = {
    Permission.READ: frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"}),
    Permission.ORDER_WRITE: frozenset({"CLINICIAN", "PRESCRIBER"}),
    Permission.HOLD_RESUME: frozenset({"CLINICIAN"}),
    Permission.CORRECTION: frozenset({"CLINICIAN", "ADMIN"}),
    Permission.TASK_WRITE: frozenset({"CLINICIAN", "NURSE", "ADMIN"}),
    Permission.CLINICAL_DATA_WRITE: frozenset({"ADMIN"}),
    Permission.DEFINITION_WRITE: frozenset({"CLINICIAN", "ADMIN"}),
    # Stored Medications are the formulary decision support resolves every order's
    # `medicationReference` through: changing one changes what is checked for every patient
    # whose order names it, so it is the pharmacy system's (an ADMIN or system client) to
    # write, not a prescriber's. A hospital with a PHARMACIST role adds it here.
    # Prescribers order non-formulary drugs with a contained Medication (docs/decisions.md).
    Permission.FORMULARY_WRITE: frozenset({"ADMIN"}),
    Permission.CDS_CALL: frozenset({"CLINICIAN", "PRESCRIBER", "NURSE", "ADMIN"}),
    # Subscriptions send order data to an outside system: an administrator (or a system
    # client given the ADMIN role) sets them up; docs/events.md.
    Permission.SUBSCRIPTION_MANAGE: frozenset({"ADMIN"}),
}

#: The permission a create or update of each resource type needs: read by the generic write
#: path, the order service (create, PUT) and fulfilment (Task updates) alike.
WRITE_ACTION: dict[str, Permission] = {
    "ServiceRequest": Permission.ORDER_WRITE,
    "MedicationRequest": Permission.ORDER_WRITE,
    "NutritionOrder": Permission.ORDER_WRITE,
    "RequestGroup": Permission.ORDER_WRITE,
    "Task": Permission.TASK_WRITE,
    "Patient": Permission.CLINICAL_DATA_WRITE,
    "Encounter": Permission.CLINICAL_DATA_WRITE,
    "AllergyIntolerance": Permission.CLINICAL_DATA_WRITE,
    "PlanDefinition": Permission.DEFINITION_WRITE,
    "ActivityDefinition": Permission.DEFINITION_WRITE,
    "Medication": Permission.FORMULARY_WRITE,
    "Subscription": Permission.SUBSCRIPTION_MANAGE,
}

#: Types whose reads need more than READ (their content is configuration, not clinical data).
READ_ACTION: dict[str, Permission] = {"Subscription": Permission.SUBSCRIPTION_MANAGE}


def may(principal: Principal, action: Permission) -> bool:
    return bool(principal.roles.intersection(ROLES[action]))


def require(principal: Principal, action: Permission) -> None:
    if not may(principal, action):
        raise Forbidden(f"Your roles do not allow {action.value}")


#: The access audit trail (docs/operations.md): an administrator's tool. A PATIENT may read
#: the events about themselves (their accounting of disclosures: who saw their orders); the
#: repository's patient compartment already limits them to those. Staff roles may not.
AUDIT_TYPES = frozenset({"AuditEvent"})


def require_read(principal: Principal, resource_type: str) -> None:
    require(principal, read_action(resource_type))
    if resource_type in AUDIT_TYPES and not (
        "ADMIN" in principal.roles or principal.is_patient_only
    ):
        raise Forbidden("Only an administrator, or a patient for their own record, reads audit")


def read_action(resource_type: str) -> Permission:
    return READ_ACTION.get(resource_type, Permission.READ)


def write_action(resource_type: str) -> Permission:
    """Types without a write action (DetectedIssue, Provenance) are written by the server only."""
    action = WRITE_ACTION.get(resource_type)
    if action is None:
        raise Forbidden(f"{resource_type} is written by the server only")
    return action
