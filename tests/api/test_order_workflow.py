"""Order lifecycle on the FHIR face: every (state, action) pair, fulfilment, referrals, races."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.clinical.ward import Ward, issue_codes
from tests.conftest import LiveServer, TokenFactory
from tests.unit.test_lifecycle import ACTIONS, EXPECTED

FHIR_STATUS = {"cancelled": "revoked"}


def _in_state(ward: Ward, pid: str, state: str) -> dict[str, Any]:
    order = ward.order(ward.lab(pid, f"loinc-{state}"))
    if state == "draft":
        return order
    if state in ("cancelled", "entered-in-error"):
        return _put_status(ward, order, FHIR_STATUS.get(state, state)).json
    ward.ok(ward.activate(order))
    if state == "on-hold":
        ward.ok(_put_status(ward, order, "on-hold"))
    elif state == "completed":
        task = _task_of(ward, order)
        ward.ok(
            ward.client.put(
                f"/fhir/R4/Task/{task['id']}",
                json={**task, "status": "completed"},
                headers=ward.nurse,
            )
        )
    current = ward.read(order)
    assert current["status"] == FHIR_STATUS.get(state, state)
    return current


def _put_status(
    ward: Ward, order: dict[str, Any], status: str, reason: str = "story", version: str = ""
) -> Any:
    """PUT the order back with `status` (and a statusReason), If-Match its current version
    unless `version` is given."""
    current = ward.read(order)
    body = {**current, "status": status}
    if status != "active":
        body["extension"] = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/request-statusReason",
                "valueCodeableConcept": {"text": reason},
            }
        ]
    return ward.update(body, version or current["meta"]["versionId"])


def _task_of(ward: Ward, order: dict[str, Any]) -> dict[str, Any]:
    bundle = ward.ok(
        ward.client.get(f"/fhir/R4/Task?focus=ServiceRequest/{order['id']}", headers=ward.doc)
    )
    assert bundle["total"] == 1
    return bundle["entry"][0]["resource"]


def _do(ward: Ward, order: dict[str, Any], action: str) -> Any:
    if action == "activate":
        return ward.activate(order)
    status = {
        "hold": "on-hold",
        "resume": "active",
        "cancel": "revoked",
        "correction": "entered-in-error",
        "complete": "completed",
    }[action]
    return _put_status(ward, order, status)


@pytest.mark.parametrize(("state", "action"), list(itertools.product(EXPECTED, ACTIONS)))
def test_every_state_and_action_on_the_fhir_face(ward: Ward, state: str, action: str) -> None:
    pid = ward.patient()
    order = _in_state(ward, pid, state)
    before = ward.read(order)
    expected = EXPECTED[state][ACTIONS.index(action)]
    r = _do(ward, order, action)
    if expected in ("ORDER_TERMINAL_STATE", "INVALID_STATE_TRANSITION"):
        if state == "draft" and action == "resume":
            # PUT status active on a draft is an activation attempt: refused, and the client
            # is told to sign it with $activate (which runs the checks a PUT would skip).
            assert r.status_code == 400, r.json
            assert r.json["issue"][0]["expression"] == ["ServiceRequest.status"]
            assert "$activate" in r.json["issue"][0]["diagnostics"]
        else:
            assert r.status_code == 409, r.json
            assert expected in issue_codes(r.json)
        assert ward.read(order) == before, "a refused change writes nothing"
    else:
        assert r.status_code == 200, r.json
        assert ward.read(order)["status"] == FHIR_STATUS.get(expected, expected)
        assert int(ward.read(order)["meta"]["versionId"]) > int(before["meta"]["versionId"])


def test_stale_if_match_is_412_but_a_terminal_order_answers_terminal_first(ward: Ward) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    stale = ward.client.post(
        f"/fhir/R4/ServiceRequest/{order['id']}/$activate",
        headers={**ward.doc, "If-Match": 'W/"7"'},
    )
    assert stale.status_code == 412
    assert "OPTIMISTIC_LOCK_CONFLICT" in issue_codes(stale.json)
    done = _in_state(ward, pid, "completed")
    queued_cancel = _put_status(ward, done, "revoked", version="1")
    assert queued_cancel.status_code == 409
    assert "ORDER_TERMINAL_STATE" in issue_codes(queued_cancel.json)


def test_medication_cancel_is_cancelled_as_a_draft_and_stopped_after_activation(ward: Ward) -> None:
    pid = ward.patient()
    for activate, expected in ((False, "cancelled"), (True, "stopped")):
        order = ward.order(ward.medication(pid, "11289"))
        if activate:
            ward.ok(ward.activate(order))
        current = ward.read(order)
        body = {**current, "status": "cancelled", "statusReason": {"text": "patient refused"}}
        r = ward.update(body, current["meta"]["versionId"])
        assert r.status_code == 200, r.json
        assert r.json["status"] == expected
        assert r.json["statusReason"]["text"] == "patient refused"


def test_activation_creates_the_task_and_its_completion_completes_the_order(ward: Ward) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    ward.ok(ward.activate(order))
    task = _task_of(ward, order)
    assert task["status"] == "requested"
    assert task["intent"] == "order"
    assert task["focus"] == {"reference": f"ServiceRequest/{order['id']}"}
    assert task["for"] == {"reference": f"Patient/{pid}"}
    assert task["authoredOn"]
    r = ward.client.put(
        f"/fhir/R4/Task/{task['id']}", json={**task, "status": "completed"}, headers=ward.nurse
    )
    assert r.status_code == 200, r.json
    assert ward.read(order)["status"] == "completed"
    cancel = _put_status(ward, order, "revoked")
    assert cancel.status_code == 409
    assert "ORDER_TERMINAL_STATE" in issue_codes(cancel.json)
    prov = ward.ok(
        ward.client.get(f"/fhir/R4/Provenance?patient={pid}&_count=100", headers=ward.doc)
    )
    reasons = {e["resource"].get("reason", [{}])[0].get("text") for e in prov["entry"]}
    assert "fulfilment task completed" in reasons


@pytest.mark.parametrize(
    ("status", "task_status"), [("revoked", "cancelled"), ("entered-in-error", "entered-in-error")]
)
def test_cancelling_or_correcting_an_active_order_closes_its_task(
    ward: Ward, status: str, task_status: str
) -> None:
    """The performer's worklist must not keep a Task for an order that was stopped or
    entered in error: the Task closes with the matching status, in the same request."""
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    ward.ok(ward.activate(order))
    ward.ok(_put_status(ward, order, status, reason="wrong test"))
    task = _task_of(ward, order)
    assert task["status"] == task_status
    open_tasks = ward.ok(
        ward.client.get(f"/fhir/R4/Task?patient={pid}&status=requested", headers=ward.doc)
    )
    assert open_tasks["total"] == 0


def test_a_status_change_by_put_keeps_the_orders_tags_and_security_labels(ward: Ward) -> None:
    """A restricted order stays restricted when it is held or cancelled by PUT, as it does
    through $activate and the legacy operations (only the version stamp changes)."""
    labels = {
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ],
        "tag": [{"system": "urn:test:ward", "code": "sexual-health"}],
    }
    pid = ward.patient()
    order = ward.order({**ward.lab(pid), "meta": labels})
    ward.ok(ward.activate(order))
    for status in ("on-hold", "revoked"):
        changed = ward.ok(_put_status(ward, order, status))
        assert {k: changed["meta"].get(k) for k in labels} == labels, status
    assert {k: ward.read(order)["meta"].get(k) for k in labels} == labels


def test_holding_an_order_keeps_its_task_open(ward: Ward) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    ward.ok(ward.activate(order))
    ward.ok(_put_status(ward, order, "on-hold", reason="NBM for theatre"))
    assert _task_of(ward, order)["status"] == "requested"


def test_activation_provenance_carries_the_clients_reason_or_says_activate(ward: Ward) -> None:
    pid = ward.patient()
    why = '{"resourceType": "Provenance", "reason": [{"text": "signed on the ward round"}]}'
    reasons = []
    for extra in ({"X-Provenance": why}, {}):
        order = ward.order(ward.lab(pid, f"loinc-{len(reasons)}"))
        ward.ok(ward.activate(order, headers={**ward.doc, **extra}))
        ref = f"{order['resourceType']}/{order['id']}"
        bundle = ward.ok(ward.client.get(f"/fhir/R4/Provenance?target={ref}", headers=ward.doc))
        [prov] = [
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["target"] == [{"reference": f"{ref}/_history/2"}]
        ]
        reasons.append(prov.get("reason"))
    assert reasons == [[{"text": "signed on the ward round"}], [{"text": "activate"}]]


def test_referral_task_tracks_scheduling(ward: Ward) -> None:
    pid = ward.patient()
    body = {
        **ward.lab(pid, "cardiology"),
        "category": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "3457005",
                        "display": "Patient referral",
                    }
                ]
            }
        ],
        "performer": [{"reference": "Organization/fac-02J"}],
    }
    order = ward.order(body)
    ward.ok(ward.activate(order))
    task = _task_of(ward, order)
    assert task["businessStatus"]["coding"][0]["code"] == "pending_scheduling"
    assert task["owner"] == {"reference": "Organization/fac-02J"}
    scheduled = {
        **task,
        "output": [
            {"type": {"text": "appointment"}, "valueReference": {"reference": "Appointment/apt-1"}}
        ],
    }
    r = ward.client.put(f"/fhir/R4/Task/{task['id']}", json=scheduled, headers=ward.nurse)
    assert r.status_code == 200, r.json
    assert r.json["businessStatus"]["coding"][0]["code"] == "scheduled"


def test_orders_are_created_as_draft_only(ward: Ward) -> None:
    pid = ward.patient()
    r = ward.create({**ward.lab(pid), "status": "active"})
    assert r.status_code == 400
    assert r.json["issue"][0]["expression"] == ["ServiceRequest.status"]


@pytest.mark.parametrize(
    ("setup", "code", "status"),
    [
        ("unknown-patient", "PATIENT_NOT_FOUND", 404),
        ("deceased", "PATIENT_DECEASED", 422),
        ("finished-encounter", "ENCOUNTER_INACTIVE", 422),
        ("other-patients-encounter", "ENCOUNTER_INACTIVE", 422),
    ],
)
def test_create_checks_patient_and_encounter(
    ward: Ward, setup: str, code: str, status: int
) -> None:
    pid = ward.patient(deceasedBoolean=True) if setup == "deceased" else ward.patient()
    body = ward.lab(pid)
    if setup == "unknown-patient":
        body["subject"] = {"reference": "Patient/nobody-here"}
    elif setup == "finished-encounter":
        body["encounter"] = {"reference": f"Encounter/{ward.encounter(pid, 'finished')}"}
    elif setup == "other-patients-encounter":
        body["encounter"] = {"reference": f"Encounter/{ward.encounter(ward.patient())}"}
    r = ward.create(body)
    assert r.status_code == status, r.json
    assert code in issue_codes(r.json)


@pytest.mark.slow
def test_ten_racing_activations_with_one_if_match_activate_once(
    live_server: LiveServer, headers: TokenFactory, ward: Ward
) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    url = f"{live_server.url}/fhir/R4/ServiceRequest/{order['id']}/$activate"
    hdrs = {**headers("CLINICIAN"), "If-Match": 'W/"1"'}
    barrier = threading.Barrier(10)

    def go(_: int) -> int:
        barrier.wait()
        return requests.post(url, headers=hdrs, timeout=30).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = sorted(pool.map(go, range(10)))
    assert statuses.count(200) == 1, statuses
    assert all(s in (409, 412) for s in statuses if s != 200), statuses
    tasks = ward.ok(
        ward.client.get(f"/fhir/R4/Task?focus=ServiceRequest/{order['id']}", headers=ward.doc)
    )
    assert tasks["total"] == 1
