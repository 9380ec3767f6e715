"""Every (state, action) pair against DESIGN §5, table-driven, with an independent table."""

from __future__ import annotations

import itertools

import pytest

from app.domain.lifecycle import Action, State, fhir_status, next_state, state_of
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
