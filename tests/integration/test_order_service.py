"""Every (state, action) pair through the domain service itself, no HTTP (both backends)."""

from __future__ import annotations

import itertools

import pytest
from flask import Flask

from app.auth import Principal
from app.domain.lifecycle import Action, State, state_of
from app.errors import InvalidStateTransition, OrderTerminalState, VersionConflict
from app.runtime import get_runtime
from app.services.fulfilment import Fulfilment
from app.services.orders import OrderService
from app.services.unit_of_work import UnitOfWork
from tests.unit.test_lifecycle import ACTIONS, EXPECTED

STEPS = {  # how to reach each state from a draft
    "draft": [],
    "active": [Action.ACTIVATE],
    "on-hold": [Action.ACTIVATE, Action.HOLD],
    "completed": [Action.ACTIVATE, Action.COMPLETE],
    "cancelled": [Action.CANCEL],
    "entered-in-error": [Action.CORRECTION],
}


def _uow(app: Flask, tenant: str) -> UnitOfWork:
    who = Principal("svc-test", tenant, frozenset({"CLINICIAN", "ADMIN"}), frozenset({tenant}))
    return UnitOfWork(get_runtime().database, who)


def _order(app: Flask, tenant: str, code: str) -> str:
    with app.app_context(), _uow(app, tenant) as uow:
        uow.repo.create("Patient", "pat-svc", {"resourceType": "Patient"})
        created = OrderService(uow, get_runtime().cds).create(
            "ServiceRequest",
            {
                "resourceType": "ServiceRequest",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": "Patient/pat-svc"},
                "code": {"coding": [{"system": "urn:test", "code": code}]},
            },
        )
        return created.order.id


def _apply(app: Flask, tenant: str, rid: str, action: Action, version: int | None = None) -> int:
    with app.app_context(), _uow(app, tenant) as uow:
        service = OrderService(uow, get_runtime().cds)
        current = service.load("ServiceRequest", rid)
        result = service.transition(
            "ServiceRequest",
            rid,
            action,
            expected_version=version or current.version_id,
            reason=f"test {action.value}",
        )
        return result.order.version_id


def _order_in(app: Flask, tenant: str, state: str, code: str) -> str:
    """A new order taken through the workflow to `state`; its id."""
    rid = _order(app, tenant, code)
    for step in STEPS[state]:
        _apply(app, tenant, rid, step)
    return rid


def _state(app: Flask, tenant: str, rid: str) -> tuple[State, int]:
    with app.app_context(), _uow(app, tenant) as uow:
        order = uow.repo.read("ServiceRequest", rid)
        assert order is not None
        return state_of(order.content["status"]), order.version_id


@pytest.mark.parametrize(("state", "action"), list(itertools.product(EXPECTED, ACTIONS)))
def test_every_state_and_action_on_the_order_service(
    app: Flask, tenant: str, state: str, action: str
) -> None:
    rid = _order_in(app, tenant, state, f"{state}-{action}")
    before = _state(app, tenant, rid)
    assert before[0] is State(state)
    expected = EXPECTED[state][ACTIONS.index(action)]
    errors = {
        "ORDER_TERMINAL_STATE": OrderTerminalState,
        "INVALID_STATE_TRANSITION": InvalidStateTransition,
    }
    if expected in errors:
        with pytest.raises(errors[expected]):
            _apply(app, tenant, rid, Action(action))
        assert _state(app, tenant, rid) == before, "a refused action writes nothing"
    else:
        version = _apply(app, tenant, rid, Action(action))
        assert _state(app, tenant, rid) == (State(expected), version)
        assert version == before[1] + 1


def test_a_stale_version_writes_nothing(app: Flask, tenant: str) -> None:
    rid = _order(app, tenant, "stale")
    with pytest.raises(VersionConflict):
        _apply(app, tenant, rid, Action.CANCEL, version=7)
    assert _state(app, tenant, rid) == (State.DRAFT, 1)


def test_completing_the_task_completes_the_order_in_the_same_transaction(
    app: Flask, tenant: str
) -> None:
    rid = _order(app, tenant, "task")
    _apply(app, tenant, rid, Action.ACTIVATE)
    with app.app_context(), _uow(app, tenant) as uow:
        order = uow.repo.read("ServiceRequest", rid)
        assert order is not None
        [task] = Fulfilment(uow).tasks_of(order)
        Fulfilment(uow).update_task(
            task.id,
            {**task.content, "status": "completed"},
            if_match=task.version_id,
            reason="done",
        )
    assert _state(app, tenant, rid)[0] is State.COMPLETED


def test_the_generic_resource_service_refuses_orders(app: Flask, tenant: str) -> None:
    """No caller can write an order around the state machine and CDS by mistake."""
    from app.services.resources import ResourceService

    with app.app_context(), _uow(app, tenant) as uow:
        with pytest.raises(TypeError):
            ResourceService(uow).create("MedicationRequest", {"resourceType": "MedicationRequest"})
        with pytest.raises(TypeError):
            ResourceService(uow).update("ServiceRequest", "x", {}, if_match=None)


def test_demo_seed_goes_through_the_workflow_and_runs_twice(app: Flask) -> None:
    from app import demo

    with app.app_context():
        runtime = get_runtime()
        demo.seed(runtime)
        demo.seed(runtime)  # idempotent
        with UnitOfWork(runtime.database, demo.SEEDER) as uow:
            warfarin = uow.repo.read("MedicationRequest", "ord-demo-warfarin")
            cbc = uow.repo.read("ServiceRequest", "ord-demo-cbc")
            tasks = Fulfilment(uow).tasks_of(warfarin) if warfarin else []
    assert warfarin is not None and warfarin.content["status"] == "active"
    assert cbc is not None and cbc.content["status"] == "draft"
    assert len(tasks) == 1, "activation through the workflow created the fulfilment Task"


#: A stale request on a closed order (DESIGN §5 precedence, OrderService.transition): the
#: client is told its view is stale (VersionConflict) when the order already is what the
#: action makes it (a cancel that lost the race to another cancel) or when the action is
#: still possible (a correction); otherwise it is told the order is closed.
STALE_ON_CLOSED: dict[str, dict[Action, type[Exception]]] = {
    "cancelled": {Action.CANCEL: VersionConflict, Action.CORRECTION: VersionConflict},
    "entered-in-error": {Action.CORRECTION: VersionConflict},
    "completed": {Action.COMPLETE: VersionConflict, Action.CORRECTION: VersionConflict},
}


@pytest.mark.parametrize(
    ("state", "action"), list(itertools.product(STALE_ON_CLOSED, [Action(a) for a in ACTIONS]))
)
def test_a_stale_action_on_a_closed_order_is_stale_only_if_already_done_or_still_possible(
    app: Flask, tenant: str, state: str, action: Action
) -> None:
    rid = _order_in(app, tenant, state, f"stale-{state}-{action.value}")
    before = _state(app, tenant, rid)
    expected = STALE_ON_CLOSED[state].get(action, OrderTerminalState)
    with pytest.raises(expected):
        _apply(app, tenant, rid, action, version=before[1] - 1)
    assert _state(app, tenant, rid) == before, "a refused action writes nothing"
