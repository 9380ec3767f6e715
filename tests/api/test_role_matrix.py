"""Role by interaction, on BOTH faces, from ONE table (DESIGN §3).

`TABLE` below is DESIGN §3's role table written out per clinical interaction — not imported
from the app. Each row says which roles may do it, how it is done on the FHIR face
(`/fhir/R4`, plus `/cds-services` for the CDS Hooks call) and, where the legacy face
(`/api/v1`) has it, how it is done there. Where the seed's per-endpoint contract is
narrower than DESIGN §3 the row says so in `legacy_roles` (the only one: the seed gives
ADMIN no `GET /orders/:id`).

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


# ---------------------------------------------------------------------- FHIR-face calls
def _fhir_order(api: LegacyApi, s: Scene) -> dict[str, Any]:
    return api.ok(api.client.get(f"{FHIR}/{s.ref}", headers=api.doc))


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
    extra: dict[str, Any] = field(default_factory=dict)


STAFF_READ = frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"})
ORDER_WRITE = frozenset({"CLINICIAN", "PRESCRIBER"})

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
        ORDER_WRITE, _draft, _fhir_operation("activate"), _legacy_activate, then="active"
    ),
    "acknowledge a warning": Interaction(
        ORDER_WRITE, _warned, _fhir_operation("acknowledge"), _legacy_acknowledge
    ),
    "cancel an order": Interaction(
        ORDER_WRITE, _active, _fhir_status("revoked"), _legacy_change("cancel"), then="revoked"
    ),
    "hold an order": Interaction(
        frozenset({"CLINICIAN"}),
        _active,
        _fhir_status("on-hold"),
        _legacy_change("hold"),
        then="on-hold",
    ),
    "resume an order": Interaction(
        frozenset({"CLINICIAN"}),
        _on_hold,
        _fhir_status("active"),
        _legacy_change("resume"),
        then="active",
    ),
    "correct an order (entered in error)": Interaction(
        frozenset({"CLINICIAN", "ADMIN"}),
        _active,
        _fhir_status("entered-in-error"),
        _legacy_change("correction"),
        then="entered-in-error",
    ),
    "complete the fulfilment Task": Interaction(
        frozenset({"CLINICIAN", "NURSE", "ADMIN"}), _active, _fhir_complete_task, then="completed"
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
    before = _fhir_order(api, scene) if scene.oid else None
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
            assert _fhir_order(api, scene) == before


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
