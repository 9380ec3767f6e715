"""Role by interaction, on BOTH faces, from ONE table (DESIGN §3).

`TABLE` below is DESIGN §3's role table written out per clinical interaction — not imported
from the app. Each row says which roles may do it, how it is done on the FHIR face
(`/fhir/R4`, plus `/cds-services` for the CDS Hooks call) and, where the legacy face
(`/api/v1`) has it, how it is done there. Where the seed's per-endpoint contract is
narrower than DESIGN §3 the row says so in `legacy_roles` (the only one: the seed gives
ADMIN no `GET /orders/:id`).

The same rows that are lifecycle actions are run a third way, through the order service
itself with no face in front (`test_the_order_service_itself_applies_the_role_table`): both
faces check roles before they reach it, but the service is the rule every face shares, so it
must refuse on its own (a PATIENT may not hold an order even if a face forgot to ask).
Subscriptions (docs/events.md) are FHIR-face rows: only ADMIN sets them up, reads, searches or
changes them; nobody deletes one (`test_nobody_deletes_a_subscription`).

Every row is run for every single role and for two-role tokens, because some refusals are
only visible with a second role: on the FHIR face a hold is a PUT, which needs an order-write
role as well, so "a NURSE may not hold" shows only with a PRESCRIBER+NURSE token. A token is
allowed when ANY of its roles is. Allowed: a 2xx and the change is made. Refused: 403
FORBIDDEN and the order is as it was. A PATIENT token is the scene's own patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.auth import Principal
from app.domain.lifecycle import Action
from app.errors import Forbidden
from app.runtime import get_runtime
from app.services.orders import OrderService
from app.services.unit_of_work import UnitOfWork
from tests.conftest import TokenFactory
from tests.fhir_data import (
    allergy_intolerance,
    encounter,
    medication_request,
    nutrition_order,
    plan_definition,
    service_request,
)
from tests.legacy_data import (
    WARFARIN,
    LegacyApi,
    error_of,
    fhir_id,
    lab,
    lab_template,
    medication,
    order_set,
)
from tests.subscriptions import subscription

FHIR = "/fhir/R4"
ROLES = ("CLINICIAN", "PRESCRIBER", "NURSE", "PATIENT", "ADMIN")
TOKENS: tuple[tuple[str, ...], ...] = (
    *((r,) for r in ROLES),
    ("PRESCRIBER", "NURSE"),
    ("PRESCRIBER", "ADMIN"),
)


@dataclass
class Scene:
    """A patient in an encounter and, per interaction, the order it acts on."""

    pid: str
    eid: str
    oid: str = ""  # legacy order id; its FHIR id is fhir_id(oid)
    rtype: str = "ServiceRequest"
    alert_id: str = ""
    sub: str = ""  # a Subscription's id, for the subscription rows

    @property
    def ref(self) -> str:
        return f"{self.rtype}/{fhir_id(self.oid)}"


Setup = Callable[[LegacyApi, Scene], None]
Call = Callable[[LegacyApi, Scene, dict[str, str]], TestResponse]


def _nothing(api: LegacyApi, s: Scene) -> None:
    return None


def _draft(api: LegacyApi, s: Scene) -> None:
    s.oid = api.created(lab(s.pid, s.eid))["orderId"]


def _active(api: LegacyApi, s: Scene) -> None:
    _draft(api, s)
    api.activated(s.oid)


def _on_hold(api: LegacyApi, s: Scene) -> None:
    _active(api, s)
    api.ok(api.change(s.oid, "hold", api.order(s.oid)["version"], "NBM"))


def _warned(api: LegacyApi, s: Scene) -> None:
    """An amoxicillin draft with an open amoxicillin-warfarin warning (warfarin is active)."""
    detail = {"medicationCode": dict(WARFARIN), "dose": 5, "doseUnit": "mg"}
    api.activated(
        api.created(medication(s.pid, s.eid, WARFARIN, medicationDetail=detail))["orderId"]
    )
    created = api.created(medication(s.pid, s.eid))
    s.oid, s.rtype = created["orderId"], "MedicationRequest"
    s.alert_id = created["cdsAlerts"][0]["alertId"]


def _subscribed(api: LegacyApi, s: Scene) -> None:
    made = api.client.post(f"{FHIR}/Subscription", json=HOOK, headers=_h(api.admin))
    s.sub = api.ok(made, 201)["id"]


#: A subscription to order activations, posting ids to a port nothing listens on.
HOOK = subscription("http://127.0.0.1:9/hook")


# ---------------------------------------------------------------------- FHIR-face calls
def _fhir_order(api: LegacyApi, s: Scene) -> dict[str, Any]:
    return api.ok(api.client.get(f"{FHIR}/{s.ref}", headers=api.doc))


def _current(api: LegacyApi, s: Scene) -> dict[str, Any] | None:
    """What the scene's call acts on, as an allowed reader sees it (None: nothing yet)."""
    if s.sub:
        return api.ok(api.client.get(f"{FHIR}/Subscription/{s.sub}", headers=api.admin))
    return _fhir_order(api, s) if s.oid else None


def _h(who: dict[str, str], **extra: str) -> dict[str, str]:
    return {**who, "Content-Type": "application/fhir+json", **extra}


def _fhir_status(status: str) -> Call:
    """PUT the order back with another status (hold, resume, revoke, entered-in-error)."""

    def call(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
        current = _fhir_order(api, s)
        body = {k: v for k, v in current.items() if k != "meta"}
        version = current["meta"]["versionId"]
        return api.client.put(
            f"{FHIR}/{s.ref}",
            json={**body, "status": status},
            headers=_h(who, **{"If-Match": f'W/"{version}"'}),
        )

    return call


def _fhir_operation(name: str) -> Call:
    def call(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
        version = _fhir_order(api, s)["meta"]["versionId"]
        params: dict[str, Any] = {"resourceType": "Parameters", "parameter": []}
        if name == "acknowledge":
            params["parameter"] = [
                {
                    "name": "alert",
                    "valueReference": {"reference": f"DetectedIssue/{fhir_id(s.alert_id)}"},
                },
                {"name": "reason", "valueString": "INR monitored daily"},
            ]
        return api.client.post(
            f"{FHIR}/{s.ref}/${name}",
            json=params,
            headers=_h(who, **{"If-Match": f'W/"{version}"'}),
        )

    return call


def _fhir_post(body: Callable[[Scene], dict[str, Any]]) -> Call:
    def call(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
        made = body(s)
        return api.client.post(f"{FHIR}/{made['resourceType']}", json=made, headers=_h(who))

    return call


def _fhir_read(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    return api.client.get(f"{FHIR}/{s.ref}", headers=who)


def _fhir_complete_task(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    found = api.ok(api.client.get(f"{FHIR}/Task?focus={s.ref}", headers=api.doc))
    task = found["entry"][0]["resource"]
    body = {k: v for k, v in task.items() if k != "meta"}
    version = task["meta"]["versionId"]
    return api.client.put(
        f"{FHIR}/Task/{task['id']}",
        json={**body, "status": "completed"},
        headers=_h(who, **{"If-Match": f'W/"{version}"'}),
    )


def _cds_hooks_call(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    draft = {
        **service_request(fhir_id(s.pid)),
        "id": "draft-1",
        "encounter": {"reference": f"Encounter/{fhir_id(s.eid)}"},
    }
    body = {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/dr-1",
            "patientId": fhir_id(s.pid),
            "selections": ["ServiceRequest/draft-1"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": draft}],
            },
        },
    }
    return api.client.post("/cds-services/order-select-checks", json=body, headers=_h(who))


def _subscription_read(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    return api.client.get(f"{FHIR}/Subscription/{s.sub}", headers=who)


def _subscription_search(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    return api.client.get(f"{FHIR}/Subscription?_id={s.sub}", headers=who)


def _subscription_update(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    current = _current(api, s)
    assert current is not None
    body = {k: v for k, v in current.items() if k != "meta"}
    # the stored channel's headers come back masked: send none rather than the mask
    body["channel"] = {k: v for k, v in body["channel"].items() if k != "header"}
    return api.client.put(
        f"{FHIR}/Subscription/{s.sub}", json={**body, "reason": "ward round"}, headers=_h(who)
    )


def _new_lab(s: Scene) -> dict[str, Any]:
    return {
        **service_request(fhir_id(s.pid)),
        "encounter": {"reference": f"Encounter/{fhir_id(s.eid)}"},
    }


# ---------------------------------------------------------------------- legacy-face calls
def _legacy_change(action: str) -> Call:
    def call(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
        return api.change(s.oid, action, api.order(s.oid)["version"], who=who)

    return call


def _legacy_activate(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    return api.activate(s.oid, api.order(s.oid)["version"], who)


def _legacy_acknowledge(api: LegacyApi, s: Scene, who: dict[str, str]) -> TestResponse:
    return api.acknowledge(s.oid, s.alert_id, api.order(s.oid)["version"], who=who)


@dataclass(frozen=True)
class Interaction:
    roles: frozenset[str]  # DESIGN §3
    setup: Setup
    fhir: Call
    legacy: Call | None = None
    #: the seed's endpoint contract, where it is narrower than DESIGN §3
    legacy_roles: frozenset[str] | None = None
    #: what the allowed call leaves the scene's order as (FHIR status), when it changes it
    then: str | None = None
    #: the order service's action, for a lifecycle row (run on the service itself too)
    action: Action | None = None
    extra: dict[str, Any] = field(default_factory=dict)


STAFF_READ = frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"})
ORDER_WRITE = frozenset({"CLINICIAN", "PRESCRIBER"})
ADMIN = frozenset({"ADMIN"})

#: DESIGN §3, one row per interaction.
TABLE: dict[str, Interaction] = {
    "read an order": Interaction(
        STAFF_READ,
        _draft,
        _fhir_read,
        lambda a, s, w: a.get(f"/orders/{s.oid}", w),
        legacy_roles=frozenset({"CLINICIAN", "NURSE", "PATIENT"}),
    ),
    "create an order": Interaction(
        ORDER_WRITE, _nothing, _fhir_post(_new_lab), lambda a, s, w: a.create(lab(s.pid, s.eid), w)
    ),
    "activate an order": Interaction(
        ORDER_WRITE,
        _draft,
        _fhir_operation("activate"),
        _legacy_activate,
        then="active",
        action=Action.ACTIVATE,
    ),
    "acknowledge a warning": Interaction(
        ORDER_WRITE, _warned, _fhir_operation("acknowledge"), _legacy_acknowledge
    ),
    "cancel an order": Interaction(
        ORDER_WRITE,
        _active,
        _fhir_status("revoked"),
        _legacy_change("cancel"),
        then="revoked",
        action=Action.CANCEL,
    ),
    "hold an order": Interaction(
        frozenset({"CLINICIAN"}),
        _active,
        _fhir_status("on-hold"),
        _legacy_change("hold"),
        then="on-hold",
        action=Action.HOLD,
    ),
    "resume an order": Interaction(
        frozenset({"CLINICIAN"}),
        _on_hold,
        _fhir_status("active"),
        _legacy_change("resume"),
        then="active",
        action=Action.RESUME,
    ),
    "correct an order (entered in error)": Interaction(
        frozenset({"CLINICIAN", "ADMIN"}),
        _active,
        _fhir_status("entered-in-error"),
        _legacy_change("correction"),
        then="entered-in-error",
        action=Action.CORRECTION,
    ),
    "complete the fulfilment Task": Interaction(
        frozenset({"CLINICIAN", "NURSE", "ADMIN"}),
        _active,
        _fhir_complete_task,
        then="completed",
        action=Action.COMPLETE,
    ),
    "record an allergy": Interaction(
        frozenset({"ADMIN"}), _nothing, _fhir_post(lambda s: allergy_intolerance(fhir_id(s.pid)))
    ),
    "register a patient": Interaction(
        frozenset({"ADMIN"}),
        _nothing,
        _fhir_post(lambda s: {"resourceType": "Patient", "gender": "female"}),
    ),
    "record an encounter": Interaction(
        frozenset({"ADMIN"}), _nothing, _fhir_post(lambda s: encounter(fhir_id(s.pid)))
    ),
    "order a medication": Interaction(
        ORDER_WRITE,
        _nothing,
        _fhir_post(
            lambda s: medication_request(
                fhir_id(s.pid), encounter={"reference": f"Encounter/{fhir_id(s.eid)}"}
            )
        ),
        lambda a, s, w: a.create(medication(s.pid, s.eid), w),
    ),
    "order a diet": Interaction(
        ORDER_WRITE,
        _nothing,
        _fhir_post(
            lambda s: nutrition_order(
                fhir_id(s.pid), encounter={"reference": f"Encounter/{fhir_id(s.eid)}"}
            )
        ),
    ),
    "record an order group": Interaction(
        ORDER_WRITE,
        _nothing,
        _fhir_post(
            lambda s: {
                "resourceType": "RequestGroup",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": f"Patient/{fhir_id(s.pid)}"},
            }
        ),
    ),
    "write an activity definition": Interaction(
        frozenset({"CLINICIAN", "ADMIN"}),
        _nothing,
        _fhir_post(
            lambda s: {
                "resourceType": "ActivityDefinition",
                "status": "active",
                "name": "Cbc",
                "kind": "ServiceRequest",
            }
        ),
    ),
    "write an order set definition": Interaction(
        frozenset({"CLINICIAN", "ADMIN"}),
        _nothing,
        _fhir_post(lambda s: plan_definition()),
        lambda a, s, w: a.post("/order-sets", order_set("Matrix set", lab_template()), w),
    ),
    "stock the formulary (a Medication)": Interaction(
        frozenset({"ADMIN"}),
        _nothing,
        _fhir_post(
            lambda s: {
                "resourceType": "Medication",
                "code": {
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310965"}
                    ]
                },
            }
        ),
    ),
    "call CDS Hooks": Interaction(
        frozenset({"CLINICIAN", "PRESCRIBER", "NURSE", "ADMIN"}), _nothing, _cds_hooks_call
    ),
    "set up a subscription": Interaction(ADMIN, _nothing, _fhir_post(lambda s: HOOK)),
    "read a subscription": Interaction(ADMIN, _subscribed, _subscription_read),
    "search subscriptions": Interaction(ADMIN, _subscribed, _subscription_search),
    "change a subscription": Interaction(ADMIN, _subscribed, _subscription_update),
}

CASES = [
    pytest.param(name, face, token, id=f"{name}-{face}-{'+'.join(token)}")
    for name, row in TABLE.items()
    for face in ("fhir", "legacy")
    if face == "fhir" or row.legacy is not None
    for token in TOKENS
]


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


def _token(api: LegacyApi, roles: tuple[str, ...], scene: Scene) -> dict[str, str]:
    if "PATIENT" in roles:
        return api.as_role(*roles, patient_id=scene.pid)
    return api.as_role(*roles)


@pytest.mark.parametrize(("name", "face", "token"), CASES)
def test_role_may_do_exactly_what_the_role_table_says(
    api: LegacyApi, name: str, face: str, token: tuple[str, ...]
) -> None:
    row = TABLE[name]
    allowed_roles = row.legacy_roles if face == "legacy" and row.legacy_roles else row.roles
    allowed = bool(allowed_roles.intersection(token))
    scene = Scene(*api.admitted())
    row.setup(api, scene)
    before = _current(api, scene)
    call = row.fhir if face == "fhir" else row.legacy
    assert call is not None
    r = call(api, scene, _token(api, token, scene))
    if allowed:
        assert 200 <= r.status_code < 300, (name, face, token, r.status_code, r.get_json())
        if row.then is not None:
            assert _fhir_order(api, scene)["status"] == row.then
    else:
        assert r.status_code == 403, (name, face, token, r.status_code, r.get_json())
        if face == "legacy":
            error_of(r, 403, "FORBIDDEN")
        else:
            assert "FORBIDDEN" in _error_codes(r.get_json())
        if before is not None:
            assert _current(api, scene) == before


SERVICE_CASES = [
    pytest.param(name, token, id=f"{name}-service-{'+'.join(token)}")
    for name, row in TABLE.items()
    if row.action is not None
    for token in TOKENS
]


@pytest.mark.parametrize(("name", "token"), SERVICE_CASES)
def test_the_order_service_itself_applies_the_role_table(
    api: LegacyApi, tenant: str, name: str, token: tuple[str, ...]
) -> None:
    row = TABLE[name]
    assert row.action is not None
    scene = Scene(*api.admitted())
    row.setup(api, scene)
    before = _current(api, scene)
    patient = fhir_id(scene.pid) if "PATIENT" in token else None
    who = Principal("matrix", tenant, frozenset(token), frozenset({tenant}), patient_id=patient)
    refused: Forbidden | None = None
    with api.client.application.app_context(), UnitOfWork(get_runtime().database, who) as uow:
        service = OrderService(uow, get_runtime().cds)
        try:
            service.transition(
                scene.rtype, fhir_id(scene.oid), row.action, expected_version=None, reason="test"
            )
        except Forbidden as err:
            refused = err
    if row.roles.intersection(token):
        assert refused is None, (name, token)
        assert _fhir_order(api, scene)["status"] == row.then
    else:
        assert refused is not None, (name, token)
        assert _current(api, scene) == before


def _entered_in_error(api: LegacyApi, s: Scene) -> None:
    _draft(api, s)
    api.ok(api.change(s.oid, "correction", 1, "wrong patient"))


@pytest.mark.parametrize(
    "token",
    [t for t in TOKENS if not TABLE["correct an order (entered in error)"].roles.intersection(t)],
    ids="+".join,
)
def test_a_role_that_may_not_correct_is_refused_whatever_the_orders_state(
    api: LegacyApi, token: tuple[str, ...]
) -> None:
    """The role check comes first: an entered-in-error PUT on an order that already is
    entered in error is 403 for a role without the correction right, not 409."""
    scene = Scene(*api.admitted())
    _entered_in_error(api, scene)
    before = _current(api, scene)
    r = _fhir_status("entered-in-error")(api, scene, _token(api, token, scene))
    assert r.status_code == 403, (token, r.status_code, r.get_json())
    assert _current(api, scene) == before


@pytest.mark.parametrize("token", TOKENS, ids=["+".join(t) for t in TOKENS])
def test_nobody_deletes_a_subscription(api: LegacyApi, token: tuple[str, ...]) -> None:
    """The server never deletes (an administrator sets `status` off instead): DELETE is
    refused to every role and the subscription stays as it was."""
    scene = Scene(*api.admitted())
    _subscribed(api, scene)
    before = _current(api, scene)
    r = api.client.delete(f"{FHIR}/Subscription/{scene.sub}", headers=_token(api, token, scene))
    assert r.status_code in (403, 405), r.get_json()
    assert _current(api, scene) == before


def _error_codes(body: dict[str, Any]) -> list[str]:
    """The error codes of an OperationOutcome (`/fhir/R4`) or of a CDS Hooks error body."""
    if "error" in body:
        return [body["error"]["code"]]
    return [
        c["code"] for i in body.get("issue", []) for c in i.get("details", {}).get("coding", [])
    ]


def test_the_table_covers_every_role_and_both_faces() -> None:
    """Every role is allowed something and refused something; each face has rows."""
    for role in ROLES:
        assert any(role in row.roles for row in TABLE.values()), role
        assert any(role not in row.roles for row in TABLE.values()), role
    assert sum(row.legacy is not None for row in TABLE.values()) >= 8
