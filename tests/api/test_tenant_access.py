"""Issue 11, access inside a tenant (DESIGN §3), on both backends: the patient compartment
on every version (4), PATIENT plus a staff role (5), Tasks (6), SMART patient/ scopes (7),
conditional create (8), `$apply` (10), and the offline rules on the FHIR face (2)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.services.unit_of_work import UnitOfWork
from tests.conftest import TokenFactory
from tests.fhir_data import encounter, medication_request, patient, service_request
from tests.orders import activate

BASE = "/fhir/R4"


def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status_code == status, (resp.status_code, resp.get_json())
    return resp.get_json()


def _code(resp: Any) -> str:
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return str(body["issue"][0]["details"]["coding"][0]["code"])


class Ward:
    """Two patients with encounters in the test's tenant, and tokens to act with."""

    def __init__(self, client: FlaskClient, headers: TokenFactory) -> None:
        self.client = client
        self.headers = headers
        self.admin = headers("ADMIN")
        self.doc = headers("CLINICIAN")
        self.a, self.b = self.patient(), self.patient()
        self.enc_a, self.enc_b = self.encounter(self.a), self.encounter(self.b)

    def patient(self) -> str:
        return str(
            _ok(self.client.post(f"{BASE}/Patient", json=patient(), headers=self.admin), 201)["id"]
        )

    def encounter(self, pid: str) -> str:
        body = encounter(pid)
        return str(
            _ok(self.client.post(f"{BASE}/Encounter", json=body, headers=self.admin), 201)["id"]
        )

    def order(self, pid: str, who: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        body = service_request(pid, **extra)
        resp = self.client.post(f"{BASE}/ServiceRequest", json=body, headers=who or self.doc)
        return dict(_ok(resp, 201))

    def get(self, path: str, who: dict[str, str]) -> Any:
        return self.client.get(f"{BASE}/{path}", headers=who)

    def put(self, resource: dict[str, Any], who: dict[str, str], **headers: str) -> Any:
        path = f"{BASE}/{resource['resourceType']}/{resource['id']}"
        return self.client.put(path, json=resource, headers={**who, **headers})


@pytest.fixture
def ward(client: FlaskClient, headers: TokenFactory) -> Ward:
    return Ward(client, headers)


def _strip_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


# ---------------------------------------------------------------- item 4
def test_an_orders_subject_cannot_change(ward: Ward) -> None:
    order = ward.order(ward.a)
    moved = {**_strip_meta(order), "subject": {"reference": f"Patient/{ward.b}"}}
    resp = ward.put(moved, ward.doc, **{"If-Match": 'W/"1"'})
    assert resp.status_code == 400, resp.get_json()
    assert "subject" in resp.get_data(as_text=True)
    assert (
        ward.get(f"ServiceRequest/{order['id']}", ward.doc).get_json()["meta"]["versionId"] == "1"
    )


def test_an_encounters_subject_cannot_change(ward: Ward) -> None:
    enc = _ok(ward.get(f"Encounter/{ward.enc_a}", ward.admin))
    moved = {**_strip_meta(enc), "subject": {"reference": f"Patient/{ward.b}"}}
    resp = ward.put(moved, ward.admin)
    assert resp.status_code == 400, resp.get_json()


def test_a_patient_sees_no_version_that_was_not_theirs(
    ward: Ward, app: Any, headers: TokenFactory
) -> None:
    """Data written before subjects became immutable (or by any other path): version 1
    belongs to B, version 2 to A. A sees only version 2, in vread and history."""
    order = ward.order(ward.b)
    rid = order["id"]
    # Written below the service layer, as old data would be: the store itself.
    runtime = app.extensions["orders"]
    doc = {**_strip_meta(order), "subject": {"reference": f"Patient/{ward.a}"}}
    with app.app_context(), UnitOfWork(runtime.database, _principal(app, headers)) as uow:
        uow.repo.update("ServiceRequest", rid, doc, 1)
    me = ward.headers("PATIENT", patient_id=ward.a)
    assert ward.get(f"ServiceRequest/{rid}", me).status_code == 200
    assert ward.get(f"ServiceRequest/{rid}/_history/2", me).status_code == 200
    assert ward.get(f"ServiceRequest/{rid}/_history/1", me).status_code == 404
    history = _ok(ward.get(f"ServiceRequest/{rid}/_history", me))
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]
    assert history["total"] == 1
    them = ward.headers("PATIENT", patient_id=ward.b)
    assert ward.get(f"ServiceRequest/{rid}/_history/1", them).status_code == 404  # not current
    staff = _ok(ward.get(f"ServiceRequest/{rid}/_history", ward.doc))
    assert staff["total"] == 2


def _principal(app: Any, headers: TokenFactory) -> Any:
    token = headers("ADMIN")
    return app.extensions["orders"].authenticator.authenticate(
        token["Authorization"], token["X-Tenant-ID"]
    )


# ---------------------------------------------------------------- item 5
@pytest.mark.parametrize("staff", ["PRESCRIBER"])
def test_patient_plus_a_role_without_read_stays_in_their_compartment(
    ward: Ward, staff: str
) -> None:
    mine, theirs = ward.order(ward.a), ward.order(ward.b)
    me = ward.headers("PATIENT", staff, patient_id=ward.a)
    assert ward.get(f"ServiceRequest/{mine['id']}", me).status_code == 200
    assert ward.get(f"ServiceRequest/{theirs['id']}", me).status_code == 404
    found = _ok(ward.get(f"ServiceRequest?subject=Patient/{ward.b}", me))
    assert found.get("total", 0) == 0 and not found.get("entry")
    everything = _ok(ward.get("ServiceRequest", me))
    assert {e["resource"]["id"] for e in everything.get("entry", [])} == {mine["id"]}
    legacy = {**me, "Content-Type": "application/json"}
    lid = theirs["id"].replace("-", "_", 1)
    assert ward.client.get(f"/api/v1/orders/{lid}", headers=legacy).status_code == 404


def test_patient_plus_a_reading_staff_role_reads_the_tenant(ward: Ward) -> None:
    theirs = ward.order(ward.b)
    both = ward.headers("PATIENT", "CLINICIAN", patient_id=ward.a)
    assert ward.get(f"ServiceRequest/{theirs['id']}", both).status_code == 200


# ---------------------------------------------------------------- item 7
def _launched(ward: Ward, scope: str, roles: tuple[str, ...] = ("CLINICIAN",)) -> dict[str, str]:
    return ward.headers(*roles, scope=scope, extra_claims={"patient": ward.a})


def test_patient_scopes_are_tied_to_the_launch_patient(ward: Ward) -> None:
    mine, theirs = ward.order(ward.a), ward.order(ward.b)
    app_token = _launched(ward, "patient/*.read")
    assert ward.get(f"ServiceRequest/{mine['id']}", app_token).status_code == 200
    assert ward.get(f"ServiceRequest/{theirs['id']}", app_token).status_code == 404
    assert ward.get(f"ServiceRequest/{theirs['id']}/_history/1", app_token).status_code == 404
    assert ward.get(f"ServiceRequest/{theirs['id']}/_history", app_token).status_code == 404
    assert ward.get(f"Patient/{ward.b}", app_token).status_code == 404
    listed = _ok(ward.get("ServiceRequest", app_token))
    assert {e["resource"]["id"] for e in listed.get("entry", [])} == {mine["id"]}


def test_patient_scopes_in_batch_entries_and_includes(ward: Ward) -> None:
    mine, theirs = ward.order(ward.a), ward.order(ward.b)
    app_token = _launched(ward, "patient/*.read")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"ServiceRequest/{theirs['id']}"}},
            {"request": {"method": "GET", "url": f"ServiceRequest/{mine['id']}"}},
            {"request": {"method": "GET", "url": f"ServiceRequest?subject=Patient/{ward.b}"}},
        ],
    }
    out = _ok(ward.client.post(BASE, json=batch, headers=app_token))
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0].startswith("404") and statuses[1].startswith("200"), statuses
    assert not out["entry"][2]["resource"].get("entry")
    included = _ok(
        ward.get(f"ServiceRequest?_id={mine['id']}&_include=ServiceRequest:subject", app_token)
    )
    kinds = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in included["entry"]}
    assert ("Patient", ward.b) not in kinds


def test_patient_scopes_without_a_launch_patient_see_nothing(ward: Ward) -> None:
    ward.order(ward.a)
    token = ward.headers("CLINICIAN", scope="patient/*.read")
    assert not _ok(ward.get("ServiceRequest", token)).get("entry")


def test_user_scopes_keep_the_tenant_view(ward: Ward) -> None:
    theirs = ward.order(ward.b)
    token = ward.headers("CLINICIAN", scope="user/*.read", extra_claims={"patient": ward.a})
    assert ward.get(f"ServiceRequest/{theirs['id']}", token).status_code == 200


def test_patient_scopes_limit_writes_to_the_launch_patient(ward: Ward) -> None:
    token = _launched(ward, "patient/*.*")
    body = service_request(ward.b)
    resp = ward.client.post(f"{BASE}/ServiceRequest", json=body, headers=token)
    assert resp.status_code in (404, 422), resp.get_json()
    assert _ok(ward.get("ServiceRequest?_summary=count", ward.doc))["total"] == 0
    ward.order(ward.a, who=token)


def test_medication_orders_follow_the_same_rule(ward: Ward) -> None:
    token = _launched(ward, "patient/MedicationRequest.rs")
    body = medication_request(ward.b)
    created = _ok(ward.client.post(f"{BASE}/MedicationRequest", json=body, headers=ward.doc), 201)
    assert ward.get(f"MedicationRequest/{created['id']}", token).status_code == 404


# ---------------------------------------------------------------- item 8
IDENTIFIER = "urn:example:placer"


def _conditional(ward: Ward, who: dict[str, str], value: str) -> Any:
    body = service_request(ward.a, identifier=[{"system": IDENTIFIER, "value": value}])
    headers = {**who, "If-None-Exist": f"identifier={IDENTIFIER}|{value}"}
    return ward.client.post(f"{BASE}/ServiceRequest", json=body, headers=headers)


@pytest.mark.parametrize(
    "who",
    [
        ("PRESCRIBER",),  # may write orders, may not read
        ("CLINICIAN", "user/ServiceRequest.c"),  # reads by role, but its scope only creates
    ],
)
def test_conditional_create_match_needs_read_to_be_returned(
    ward: Ward, who: tuple[str, ...]
) -> None:
    first = _ok(_conditional(ward, ward.doc, "P-1"), 201)
    role, *scope = who
    token = ward.headers(role, **({"scope": scope[0]} if scope else {}))
    again = _conditional(ward, token, "P-1")
    assert again.status_code == 200
    assert not again.get_data(), again.get_data(as_text=True)[:200]
    assert again.headers["Location"].endswith(f"/ServiceRequest/{first['id']}/_history/1")
    # With read rights the match comes back, as FHIR says.
    assert _ok(_conditional(ward, ward.doc, "P-1"))["id"] == first["id"]


def test_transaction_checks_roles_and_scopes_before_the_condition(ward: Ward) -> None:
    for n in (1, 2):  # two orders share the identifier: the condition matches twice
        body = service_request(ward.a, identifier=[{"system": IDENTIFIER, "value": "DUP"}])
        _ok(ward.client.post(f"{BASE}/ServiceRequest", json=body, headers=ward.doc), 201)
        assert n
    entry = {
        "fullUrl": "urn:uuid:0b7e2c6e-0000-4000-8000-000000000001",
        "resource": service_request(ward.a),
        "request": {
            "method": "POST",
            "url": "ServiceRequest",
            "ifNoneExist": f"identifier={IDENTIFIER}|DUP",
        },
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    for token in (ward.headers("NURSE"), ward.headers("CLINICIAN", scope="user/Patient.read")):
        resp = ward.client.post(BASE, json=bundle, headers=token)
        assert resp.status_code == 403, resp.get_json()  # not 412: the count stays secret
    assert ward.client.post(BASE, json=bundle, headers=ward.doc).status_code == 412


# ---------------------------------------------------------------- item 10
def _plan(ward: Ward) -> str:
    plan = {
        "resourceType": "PlanDefinition",
        "status": "active",
        "name": "Labs",
        "contained": [
            {
                "resourceType": "ActivityDefinition",
                "id": "cbc",
                "status": "active",
                "kind": "ServiceRequest",
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "extension": [
                    {
                        "url": "urn:orders-service:order-category",
                        "valueCodeableConcept": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]
                        },
                    }
                ],
            }
        ],
        "action": [{"definitionCanonical": "#cbc"}],
    }
    return str(
        _ok(ward.client.post(f"{BASE}/PlanDefinition", json=plan, headers=ward.doc), 201)["id"]
    )


def _apply(ward: Ward, plan_id: str, who: dict[str, str], **headers: str) -> Any:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{ward.a}"},
            {"name": "encounter", "valueString": f"Encounter/{ward.enc_a}"},
        ],
    }
    path = f"{BASE}/PlanDefinition/{plan_id}/$apply"
    return ward.client.post(path, json=params, headers={**who, **headers})


def test_apply_needs_read_on_the_plan_and_create_on_what_it_writes(ward: Ward) -> None:
    plan_id = _plan(ward)
    writes = "user/ServiceRequest.c user/RequestGroup.c"
    reader = ward.headers("CLINICIAN", scope=f"user/PlanDefinition.r {writes}")
    assert _apply(ward, plan_id, reader).status_code == 200
    updater = ward.headers("CLINICIAN", scope=f"user/PlanDefinition.u {writes}")
    assert _apply(ward, plan_id, updater).status_code == 403
    no_create = ward.headers("CLINICIAN", scope="user/PlanDefinition.r user/RequestGroup.c")
    before = _ok(ward.get("ServiceRequest?_summary=count", ward.doc))["total"]
    assert _apply(ward, plan_id, no_create).status_code == 403
    assert _ok(ward.get("ServiceRequest?_summary=count", ward.doc))["total"] == before


# ---------------------------------------------------------------- item 2
OFFLINE = {"X-Offline-Queued-At": "2026-11-21T06:15:00Z"}
REFERRAL = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}


def _offline_refused(resp: Any) -> None:
    assert resp.status_code == 422, resp.get_json()
    assert _code(resp) == "OFFLINE_CREATE_NOT_ALLOWED"


def test_offline_medication_and_referral_creates_are_refused_on_fhir(ward: Ward) -> None:
    queued = {**ward.doc, **OFFLINE}
    med = medication_request(ward.a)
    _offline_refused(ward.client.post(f"{BASE}/MedicationRequest", json=med, headers=queued))
    referral = service_request(ward.a, category=[REFERRAL])
    _offline_refused(ward.client.post(f"{BASE}/ServiceRequest", json=referral, headers=queued))
    put = {**med, "id": "med-offline-1"}
    _offline_refused(ward.put(put, queued))
    _offline_refused(_apply(ward, _plan(ward), ward.doc, **OFFLINE))
    entry = {"resource": med, "request": {"method": "POST", "url": "MedicationRequest"}}
    lab_entry = {
        "resource": service_request(ward.a),
        "request": {"method": "POST", "url": "ServiceRequest"},
    }
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [entry, lab_entry]}
    out = _ok(ward.client.post(BASE, json=batch, headers=queued))
    first, second = out["entry"]
    assert first["response"]["status"].startswith("422")
    assert first["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "OFFLINE_CREATE_NOT_ALLOWED" in str(first["response"]["outcome"])
    assert second["response"]["status"].startswith("201")
    transaction = {**batch, "type": "transaction"}
    _offline_refused(ward.client.post(BASE, json=transaction, headers=queued))
    assert _ok(ward.get("MedicationRequest?_summary=count", ward.doc))["total"] == 0


def test_offline_lab_orders_are_accepted_on_fhir(ward: Ward) -> None:
    queued = {**ward.doc, **OFFLINE}
    resp = ward.client.post(f"{BASE}/ServiceRequest", json=service_request(ward.a), headers=queued)
    assert resp.status_code == 201, resp.get_json()


def test_malformed_offline_header_is_400_on_fhir(ward: Ward) -> None:
    headers = {**ward.doc, "X-Offline-Queued-At": "yesterday"}
    resp = ward.client.post(f"{BASE}/ServiceRequest", json=service_request(ward.a), headers=headers)
    assert resp.status_code == 400


# ---------------------------------------------------------------- item 6
def _active_order(ward: Ward) -> tuple[dict[str, Any], dict[str, Any]]:
    """An activated lab order for patient A and the Task its activation created."""
    order = activate(ward.client, ward.doc, ward.order(ward.a))
    found = _ok(ward.get(f"Task?focus=ServiceRequest/{order['id']}", ward.doc))
    return order, found["entry"][0]["resource"]


def test_tasks_are_created_by_activation_only(ward: Ward) -> None:
    nurse = ward.headers("NURSE")
    order, _task = _active_order(ward)
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{order['id']}"},
        "for": {"reference": f"Patient/{ward.a}"},
    }
    before = _ok(ward.get("Task?_summary=count", ward.doc))["total"]
    assert ward.client.post(f"{BASE}/Task", json=body, headers=nurse).status_code == 405
    put_new = ward.put({**body, "id": "task-made-up"}, nurse)
    assert put_new.status_code == 404, put_new.get_json()
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "Task"}}],
    }
    out = _ok(ward.client.post(BASE, json=batch, headers=nurse))
    assert out["entry"][0]["response"]["status"].startswith("405")
    assert _ok(ward.get("Task?_summary=count", ward.doc))["total"] == before


@pytest.mark.parametrize(
    "tie",
    ["focus", "for", "basedOn"],
)
def test_a_task_cannot_be_pointed_at_another_order(ward: Ward, tie: str) -> None:
    nurse = ward.headers("NURSE")
    mine, my_task = _active_order(ward)
    other, _other_task = _active_order(ward)
    moved = {k: v for k, v in my_task.items() if k != "meta"}
    moved["status"] = "completed"
    if tie == "focus":
        moved["focus"] = {"reference": f"ServiceRequest/{other['id']}"}
    elif tie == "for":
        moved["for"] = {"reference": f"Patient/{ward.b}"}
    else:
        moved["basedOn"] = [{"reference": f"ServiceRequest/{other['id']}"}]
    resp = ward.put(moved, nurse, **{"If-Match": f'W/"{my_task["meta"]["versionId"]}"'})
    assert resp.status_code == 400, resp.get_json()
    assert f"Task.{tie}" in resp.get_data(as_text=True)
    for order in (mine, other):
        assert _ok(ward.get(f"ServiceRequest/{order['id']}", ward.doc))["status"] == "active"


def test_completing_a_task_completes_only_its_own_order(ward: Ward) -> None:
    nurse = ward.headers("NURSE")
    mine, my_task = _active_order(ward)
    other, _other_task = _active_order(ward)
    done = {**{k: v for k, v in my_task.items() if k != "meta"}, "status": "completed"}
    _ok(ward.put(done, nurse, **{"If-Match": f'W/"{my_task["meta"]["versionId"]}"'}))
    assert _ok(ward.get(f"ServiceRequest/{mine['id']}", ward.doc))["status"] == "completed"
    assert _ok(ward.get(f"ServiceRequest/{other['id']}", ward.doc))["status"] == "active"
