"""Every (state, action) pair against DESIGN §5, table-driven, with an independent table."""

from __future__ import annotations

import itertools

import pytest

from app.domain.lifecycle import (
    Action,
    State,
    action_for_status_change,
    fhir_status,
    next_state,
    state_of,
)
from app.errors import InvalidStateTransition, OrderTerminalState

T = "ORDER_TERMINAL_STATE"
X = "INVALID_STATE_TRANSITION"
# Rows: from-state; columns: activate, hold, resume, cancel, correction, complete (DESIGN §5).
EXPECTED = {
    "draft": ["active", X, X, "cancelled", "entered-in-error", X],
    "active": [X, "on-hold", X, "cancelled", "entered-in-error", "completed"],
    "on-hold": [X, X, "active", "cancelled", "entered-in-error", X],
    "completed": [T, T, T, T, "entered-in-error", T],
    "cancelled": [T, T, T, T, "entered-in-error", T],
    "entered-in-error": [T, T, T, T, T, T],
}
ACTIONS = ["activate", "hold", "resume", "cancel", "correction", "complete"]


@pytest.mark.parametrize(("state", "action"), list(itertools.product(EXPECTED, ACTIONS)))
def test_every_state_action_pair(state: str, action: str) -> None:
    expected = EXPECTED[state][ACTIONS.index(action)]
    if expected == T:
        with pytest.raises(OrderTerminalState):
            next_state(State(state), Action(action))
    elif expected == X:
        with pytest.raises(InvalidStateTransition):
            next_state(State(state), Action(action))
    else:
        assert next_state(State(state), Action(action)) is State(expected)


@pytest.mark.parametrize(
    ("rtype", "previous", "stored"),
    [
        ("ServiceRequest", State.ACTIVE, "revoked"),
        ("NutritionOrder", State.DRAFT, "revoked"),
        ("MedicationRequest", State.DRAFT, "cancelled"),
        ("MedicationRequest", State.ACTIVE, "stopped"),
        ("MedicationRequest", State.ON_HOLD, "stopped"),
    ],
)
def test_cancel_is_stored_as_the_fhir_status_of_each_type(
    rtype: str, previous: State, stored: str
) -> None:
    assert fhir_status(rtype, State.CANCELLED, previous=previous) == stored
    assert state_of(stored) is State.CANCELLED


def test_a_medication_cancelled_with_no_known_previous_state_is_cancelled_not_stopped() -> None:
    assert fhir_status("MedicationRequest", State.CANCELLED) == "cancelled"
    assert fhir_status("MedicationRequest", State.CANCELLED, previous=None) == "cancelled"


# Every FHIR status a client may PUT, and the lifecycle state it means (R4 request-status and
# medicationrequest-status; written here, not imported).
FHIR_STATUSES = {
    "draft": "draft",
    "active": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "revoked": "cancelled",
    "cancelled": "cancelled",
    "stopped": "cancelled",
    "entered-in-error": "entered-in-error",
}


@pytest.mark.parametrize("status", list(FHIR_STATUSES))
def test_every_stored_status_has_its_lifecycle_state(status: str) -> None:
    assert state_of(status) is State(FHIR_STATUSES[status])


@pytest.mark.parametrize("status", ["unknown", "", "Active", "suspended"])
def test_a_status_with_no_lifecycle_state_is_an_invalid_transition(status: str) -> None:
    with pytest.raises(InvalidStateTransition):
        state_of(status)


@pytest.mark.parametrize(
    ("state", "status"),
    [(s, st) for s in EXPECTED for st in FHIR_STATUSES if FHIR_STATUSES[st] != s],
)
def test_a_put_changing_the_status_is_the_action_the_table_allows(state: str, status: str) -> None:
    """PUT with another status amounts to the one action that leads there (DESIGN §5), or
    fails as that action would: ORDER_TERMINAL_STATE for a terminal order, else
    INVALID_STATE_TRANSITION."""
    target = FHIR_STATUSES[status]
    leading = [a for a, result in zip(ACTIONS, EXPECTED[state], strict=True) if result == target]
    if leading:
        assert action_for_status_change(State(state), status) is Action(leading[0])
    elif EXPECTED[state][0] == T:
        with pytest.raises(OrderTerminalState):
            action_for_status_change(State(state), status)
    else:
        with pytest.raises(InvalidStateTransition) as raised:
            action_for_status_change(State(state), status)
        assert not isinstance(raised.value, OrderTerminalState)
