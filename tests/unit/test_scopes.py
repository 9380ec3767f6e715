"""SMART resource scopes (DESIGN §3): parsing from claims and what each scope permits."""

from __future__ import annotations

import pytest

from app.auth.scopes import ACTIONS, parse_scopes
from app.auth.tokens import scope_allows

ALL = sorted(ACTIONS)


def allowed(scopes: set[str], resource_type: str = "MedicationRequest") -> set[str]:
    """The actions the scopes permit on one resource type."""
    return {a for a in ALL if scope_allows(frozenset(scopes), resource_type, a, False)}


def test_no_scopes_leaves_it_to_roles() -> None:
    assert allowed(set()) == set(ACTIONS)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("user/MedicationRequest.read", {"read", "search"}),
        ("user/MedicationRequest.write", {"create", "update", "delete"}),
        ("user/MedicationRequest.*", set(ACTIONS)),
        ("user/MedicationRequest.rs", {"read", "search"}),
        ("user/MedicationRequest.r", {"read"}),
        ("user/MedicationRequest.s", {"search"}),
        ("user/MedicationRequest.cu", {"create", "update"}),
        ("user/MedicationRequest.d", {"delete"}),
        ("user/MedicationRequest.cruds", set(ACTIONS)),
    ],
)
def test_v1_and_v2_permissions(scope: str, expected: set[str]) -> None:
    assert allowed({scope}) == expected


@pytest.mark.parametrize("context", ["patient", "user", "system"])
def test_every_context_prefix_grants(context: str) -> None:
    assert allowed({f"{context}/MedicationRequest.rs"}) == {"read", "search"}


def test_patient_context_flag_does_not_change_the_answer() -> None:
    scopes = frozenset({"patient/Task.rs"})
    for patient_context in (True, False):
        assert scope_allows(scopes, "Task", "read", patient_context)
        assert not scope_allows(scopes, "Task", "update", patient_context)


def test_resource_type_must_match_unless_wildcard() -> None:
    assert allowed({"user/ServiceRequest.rs"}, "MedicationRequest") == set()
    assert allowed({"user/ServiceRequest.rs"}, "ServiceRequest") == {"read", "search"}
    assert allowed({"patient/*.read"}, "Observation") == {"read", "search"}
    # Resource types are case-sensitive, as in FHIR.
    assert allowed({"user/medicationrequest.read"}, "MedicationRequest") == set()


def test_grants_from_several_scopes_add_up() -> None:
    scopes = {"user/MedicationRequest.read", "user/MedicationRequest.c", "user/Task.u"}
    assert allowed(scopes) == {"read", "search", "create"}
    assert allowed(scopes, "Task") == {"update"}


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Observation.rs?category=laboratory",  # v2 filter we cannot enforce
        "user/MedicationRequest.sr",  # letters out of order
        "user/MedicationRequest.x",
        "user/MedicationRequest.",
        "user/Medication-Request.read",
    ],
)
def test_unenforceable_resource_scopes_grant_nothing_but_keep_enforcement_on(scope: str) -> None:
    parsed = parse_scopes(f"openid {scope}")
    assert parsed == frozenset({scope})
    assert allowed(set(parsed)) == set()
    assert allowed(set(parsed), "Observation") == set()


def test_parse_drops_non_resource_scopes() -> None:
    scope = "openid fhirUser profile launch launch/patient offline_access user/Task.rs"
    assert parse_scopes(scope) == frozenset({"user/Task.rs"})
    assert parse_scopes("openid profile") == frozenset()
    assert parse_scopes(None) == frozenset()


def test_parse_accepts_scp_list_and_string_and_merges_with_scope() -> None:
    assert parse_scopes(None, ["system/*.read", 7, "openid"]) == frozenset({"system/*.read"})
    assert parse_scopes(None, "system/Task.u system/Task.r") == frozenset(
        {"system/Task.u", "system/Task.r"}
    )
    assert parse_scopes("user/Task.r", ["user/Task.u"]) == frozenset({"user/Task.r", "user/Task.u"})


def test_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        scope_allows(frozenset({"user/*.*"}), "Task", "patch", False)
