"""The order lifecycle (DESIGN §5) as a table, plus the FHIR status each state maps to.

Legacy states are the vocabulary of the rules; FHIR statuses are how they are stored. A
cancel maps to `revoked` for ServiceRequest/NutritionOrder, and for MedicationRequest to
`cancelled` before activation or `stopped` after it (R4 medicationrequest-status).
"""

from __future__ import annotations

from enum import StrEnum

from app.errors import InvalidStateTransition, OrderTerminalState


class State(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


class Action(StrEnum):
    ACTIVATE = "activate"
    HOLD = "hold"
    RESUME = "resume"
    CANCEL = "cancel"
    CORRECTION = "correction"
    COMPLETE = "complete"


TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.DRAFT, Action.ACTIVATE): State.ACTIVE,
    (State.DRAFT, Action.CANCEL): State.CANCELLED,
    (State.DRAFT, Action.CORRECTION): State.ENTERED_IN_ERROR,
    (State.ACTIVE, Action.HOLD): State.ON_HOLD,
    (State.ACTIVE, Action.CANCEL): State.CANCELLED,
    (State.ACTIVE, Action.CORRECTION): State.ENTERED_IN_ERROR,
    (State.ACTIVE, Action.COMPLETE): State.COMPLETED,
    (State.ON_HOLD, Action.RESUME): State.ACTIVE,
    (State.ON_HOLD, Action.CANCEL): State.CANCELLED,
    (State.ON_HOLD, Action.CORRECTION): State.ENTERED_IN_ERROR,
    (State.COMPLETED, Action.CORRECTION): State.ENTERED_IN_ERROR,
    (State.CANCELLED, Action.CORRECTION): State.ENTERED_IN_ERROR,
}
TERMINAL = frozenset({State.COMPLETED, State.CANCELLED, State.ENTERED_IN_ERROR})

_TO_STATE: dict[str, State] = {
    "draft": State.DRAFT,
    "active": State.ACTIVE,
    "on-hold": State.ON_HOLD,
    "completed": State.COMPLETED,
    "revoked": State.CANCELLED,
    "cancelled": State.CANCELLED,
    "stopped": State.CANCELLED,
    "entered-in-error": State.ENTERED_IN_ERROR,
}


def state_of(fhir_status: str) -> State:
    """The lifecycle state of a stored FHIR status (`unknown` is treated as an error state)."""
    state = _TO_STATE.get(fhir_status)
    if state is None:
        raise InvalidStateTransition(f"Order status {fhir_status!r} has no lifecycle state")
    return state


def next_state(current: State, action: Action) -> State:
    """Apply `action`, or raise the error DESIGN §5 names for the pair."""
    target = TRANSITIONS.get((current, action))
    if target is not None:
        return target
    if current in TERMINAL:
        raise OrderTerminalState(f"The order is {current.value}; {action.value} is not possible")
    raise InvalidStateTransition(
        f"{action.value} is not possible for an order that is {current.value}"
    )


def fhir_status(resource_type: str, state: State, *, previous: State | None = None) -> str:
    """The FHIR status that stores `state` for this resource type."""
    if state is not State.CANCELLED:
        return state.value
    if resource_type == "MedicationRequest":
        return "cancelled" if previous in (None, State.DRAFT) else "stopped"
    return "revoked"


def action_for_status_change(old: State, new_fhir_status: str) -> Action:
    """Which lifecycle action a FHIR `PUT` that changes status from `old` amounts to."""
    new = state_of(new_fhir_status)
    for (source, action), target in TRANSITIONS.items():
        if source is old and target is new:
            return action
    if old in TERMINAL:
        raise OrderTerminalState(f"The order is {old.value}; its status cannot change")
    raise InvalidStateTransition(f"Status cannot change from {old.value} to {new_fhir_status}")
