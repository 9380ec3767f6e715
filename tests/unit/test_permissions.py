"""What a 403 says: the permission the caller lacks, by its name (app/domain/access.py).
A client (and the person reading its logs) learns what to ask for, not just "forbidden"."""

from __future__ import annotations

import pytest

from app.auth import Principal
from app.domain import access
from app.errors import Forbidden

#: The words each permission is known by in 403 messages and in docs/security.md.
NAMES = {
    access.Permission.READ: "read",
    access.Permission.ORDER_WRITE: "order-write",
    access.Permission.HOLD_RESUME: "hold-resume",
    access.Permission.CORRECTION: "correction",
    access.Permission.TASK_WRITE: "task-write",
    access.Permission.CLINICAL_DATA_WRITE: "clinical-data-write",
    access.Permission.DEFINITION_WRITE: "definition-write",
    access.Permission.FORMULARY_WRITE: "formulary-write",
    access.Permission.CDS_CALL: "cds-call",
    access.Permission.SUBSCRIPTION_MANAGE: "subscription-manage",
}


def test_every_permission_has_a_name() -> None:
    assert set(NAMES) == set(access.Permission)


@pytest.mark.parametrize("permission", list(access.Permission))
def test_a_403_names_the_missing_permission(permission: access.Permission) -> None:
    nobody = Principal("u", "t", frozenset({"NO-SUCH-ROLE"}), frozenset({"t"}))
    with pytest.raises(Forbidden) as err:
        access.require(nobody, permission)
    assert err.value.message == f"Your roles do not allow {NAMES[permission]}"


@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [
        ("MedicationRequest", access.Permission.ORDER_WRITE),
        ("ServiceRequest", access.Permission.ORDER_WRITE),
        ("NutritionOrder", access.Permission.ORDER_WRITE),
        ("Task", access.Permission.TASK_WRITE),
        ("Patient", access.Permission.CLINICAL_DATA_WRITE),
        ("PlanDefinition", access.Permission.DEFINITION_WRITE),
        ("Medication", access.Permission.FORMULARY_WRITE),
    ],
)
def test_each_writable_type_needs_its_permission(
    resource_type: str, permission: access.Permission
) -> None:
    assert access.write_action(resource_type) is permission


def test_server_written_types_are_refused_to_everyone() -> None:
    for rtype in ("DetectedIssue", "Provenance", "AuditEvent"):
        with pytest.raises(Forbidden):
            access.write_action(rtype)
