"""`POST /fhir/R4` with transaction and batch Bundles (issue 2).

A transaction is all-or-nothing with `urn:uuid:` references resolved; a batch reports each
entry on its own. Every failure case checks that nothing was stored.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import (
    bundle,
    encounter,
    entry,
    medication_request,
    patient,
    service_request,
)

BASE = "/fhir/R4"
SERVER_ID = re.compile(r"^[a-z]+-[0-9A-Z]{26}$")
MRN = "urn:oid:1.2.36.146.595.217.0.1"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def total(client: FlaskClient, h: dict[str, str], rtype: str, query: str = "") -> int:
    r = client.get(f"{BASE}/{rtype}?_summary=count{'&' + query if query else ''}", headers=h)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["total"]


def counts(client: FlaskClient, h: dict[str, str]) -> dict[str, int]:
    return {
        t: total(client, h, t)
        for t in ("Patient", "ServiceRequest", "MedicationRequest", "Provenance")
    }


def create(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post(f"{BASE}/{body['resourceType']}", json=body, headers=h)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def status_code(item: dict[str, Any]) -> int:
    return int(item["response"]["status"].split()[0])


def outcome_codes(item: dict[str, Any]) -> list[str]:
    """The error codes of a batch entry's OperationOutcome."""
    outcome = item["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return [c["code"] for i in outcome["issue"] for c in i.get("details", {}).get("coding", [])]


def expressions(item: dict[str, Any]) -> set[str]:
    return {e for i in item["response"]["outcome"]["issue"] for e in i.get("expression", [])}


@pytest.fixture
def staff(headers: TokenFactory) -> dict[str, str]:
    return headers("ADMIN", "CLINICIAN")


# ---------------------------------------------------------------------------- transaction
def test_transaction_creates_all_and_resolves_urn_uuid_references(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pat_urn = urn()
    body = bundle(
        "transaction",
        # the order comes first: references must resolve whatever the entry order
        entry(
            "POST", "ServiceRequest", service_request("placeholder", subject={"reference": pat_urn})
        ),
        entry("POST", "Patient", patient(), full_url=pat_urn),
        entry("POST", "MedicationRequest", medication_request("x", subject={"reference": pat_urn})),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    resp = r.get_json()
    assert resp["resourceType"] == "Bundle"
    assert resp["type"] == "transaction-response"
    assert len(resp["entry"]) == 3
    assert [status_code(e) for e in resp["entry"]] == [201, 201, 201]
    sr, pat, mr = (e["resource"] for e in resp["entry"])
    assert (sr["resourceType"], pat["resourceType"], mr["resourceType"]) == (
        "ServiceRequest",
        "Patient",
        "MedicationRequest",
    )
    for item, res in zip(resp["entry"], (sr, pat, mr), strict=True):
        assert SERVER_ID.match(res["id"])
        assert item["response"]["location"].endswith(
            f"{res['resourceType']}/{res['id']}/_history/1"
        )
        assert item["response"]["etag"] == 'W/"1"'

    stored_sr = client.get(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff).get_json()
    stored_mr = client.get(f"{BASE}/MedicationRequest/{mr['id']}", headers=staff).get_json()
    assert stored_sr["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert stored_mr["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert client.get(f"{BASE}/Patient/{pat['id']}", headers=staff).status_code == 200
    assert "urn:uuid" not in str(stored_sr)
    # searchable by the resolved reference, with a Provenance per write
    assert total(client, staff, "ServiceRequest", f"patient={pat['id']}") == 1
    assert counts(client, staff) == {
        "Patient": 1,
        "ServiceRequest": 1,
        "MedicationRequest": 1,
        "Provenance": 3,
    }


BAD_SECOND_ENTRIES = {
    "invalid-status": lambda u: entry(
        "POST", "ServiceRequest", service_request("x", subject={"reference": u}, status="bogus")
    ),
    "unknown-element": lambda u: entry(
        "POST", "ServiceRequest", service_request("x", subject={"reference": u}, colour="red")
    ),
    "missing-reference": lambda u: entry("POST", "ServiceRequest", service_request("pat-nobody")),
    "missing-patient-of-encounter": lambda u: entry("POST", "Encounter", encounter("pat-nobody")),
    "order-not-draft": lambda u: entry(
        "POST", "ServiceRequest", service_request("x", subject={"reference": u}, status="active")
    ),
    "unresolved-urn": lambda u: entry(
        "POST", "ServiceRequest", service_request("x", subject={"reference": urn()})
    ),
    "wrong-resource-type": lambda u: entry("POST", "ServiceRequest", patient()),
    "delete": lambda u: entry("DELETE", "Patient/whatever"),
    "unsupported-type": lambda u: entry("POST", "Observation", {"resourceType": "Observation"}),
    "server-only-type": lambda u: entry("POST", "Provenance", {"resourceType": "Provenance"}),
}


@pytest.mark.parametrize("bad", list(BAD_SECOND_ENTRIES), ids=list(BAD_SECOND_ENTRIES))
def test_transaction_with_one_bad_entry_fails_and_stores_nothing(
    client: FlaskClient, staff: dict[str, str], bad: str
) -> None:
    existing = create(client, staff, patient())
    before = counts(client, staff)
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(name=[{"family": "Ghost"}]), full_url=pat_urn),
        entry("PUT", f"Patient/{existing}", patient(existing, gender="male")),
        BAD_SECOND_ENTRIES[bad](pat_urn),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert 400 <= r.status_code < 500, r.get_json()
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert counts(client, staff) == before
    assert total(client, staff, "Patient", "name=Ghost") == 0
    current = client.get(f"{BASE}/Patient/{existing}", headers=staff).get_json()
    assert current["meta"]["versionId"] == "1"
    assert "gender" not in current


def test_transaction_refused_by_a_hard_stop_stores_nothing(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    """A hard-stop keeps what a single request found (DESIGN §6); in a transaction it keeps
    nothing: not the patient, not the allergy written by earlier entries."""
    before = counts(client, staff)
    pat_urn = urn()
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": pat_urn},
        "criticality": "high",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "764146007"}]},
    }
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(name=[{"family": "Ghost"}]), full_url=pat_urn),
        entry("POST", "AllergyIntolerance", allergy),
        entry(
            "POST",
            "MedicationRequest",
            medication_request("x", subject={"reference": pat_urn}),  # amoxicillin 308191
        ),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 422, r.get_json()
    assert "CDS_HARD_STOP" in [
        c["code"] for i in r.get_json()["issue"] for c in i["details"]["coding"]
    ]
    assert counts(client, staff) == before
    assert total(client, staff, "AllergyIntolerance") == 0
    assert total(client, staff, "DetectedIssue") == 0


def test_invalid_transaction_entry_is_400_naming_the_problem(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(), full_url=pat_urn),
        entry(
            "POST",
            "ServiceRequest",
            service_request("x", subject={"reference": pat_urn}, status="bogus"),
        ),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 400
    issues = r.get_json()["issue"]
    assert issues[0]["details"]["coding"][0]["code"] == "VALIDATION_ERROR"
    assert "ServiceRequest.status" in {e for i in issues for e in i.get("expression", [])}
    assert counts(client, staff) == {
        "Patient": 0,
        "ServiceRequest": 0,
        "MedicationRequest": 0,
        "Provenance": 0,
    }


def test_transaction_is_all_or_nothing_when_a_role_check_fails(
    client: FlaskClient, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")  # may write Patients but not orders
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry("POST", "Patient", patient(), full_url=pat_urn),
        entry("POST", "ServiceRequest", service_request("x", subject={"reference": pat_urn})),
    )
    r = client.post(BASE, json=body, headers=admin)
    assert r.status_code == 403
    assert r.get_json()["issue"][0]["details"]["coding"][0]["code"] == "FORBIDDEN"
    assert counts(client, admin) == {
        "Patient": 0,
        "ServiceRequest": 0,
        "MedicationRequest": 0,
        "Provenance": 0,
    }


def test_transaction_conditional_create_reuses_the_existing_patient(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    existing = create(client, staff, patient(identifier=[{"system": MRN, "value": "777"}]))
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry(
            "POST",
            "Patient",
            patient(identifier=[{"system": MRN, "value": "777"}]),
            full_url=pat_urn,
            if_none_exist=f"identifier={MRN}|777",
        ),
        entry("POST", "ServiceRequest", service_request("x", subject={"reference": pat_urn})),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    pat_item, sr_item = r.get_json()["entry"]
    assert status_code(pat_item) == 200
    assert pat_item["resource"]["id"] == existing
    assert status_code(sr_item) == 201
    stored = client.get(
        f"{BASE}/ServiceRequest/{sr_item['resource']['id']}", headers=staff
    ).get_json()
    assert stored["subject"] == {"reference": f"Patient/{existing}"}
    assert total(client, staff, "Patient") == 1


def test_transaction_conditional_create_without_a_match_creates(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry(
            "POST",
            "Patient",
            patient(identifier=[{"system": MRN, "value": "888"}]),
            full_url=pat_urn,
            if_none_exist=f"identifier={MRN}|888",
        ),
        entry("POST", "ServiceRequest", service_request("x", subject={"reference": pat_urn})),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    pat_item, sr_item = r.get_json()["entry"]
    assert status_code(pat_item) == 201
    assert sr_item["resource"]["subject"] == {"reference": f"Patient/{pat_item['resource']['id']}"}
    assert total(client, staff, "Patient", f"identifier={MRN}|888") == 1


def test_transaction_put_update_as_create_and_update(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    existing = create(client, staff, patient())
    body = bundle(
        "transaction",
        entry("PUT", "Patient/feed-001", patient("feed-001")),
        entry("PUT", f"Patient/{existing}", patient(existing, gender="female")),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    created, updated = r.get_json()["entry"]
    assert status_code(created) == 201
    assert status_code(updated) == 200
    assert updated["response"]["etag"] == 'W/"2"'
    assert client.get(f"{BASE}/Patient/feed-001", headers=staff).status_code == 200
    assert client.get(f"{BASE}/Patient/{existing}", headers=staff).get_json()["gender"] == "female"


def test_transaction_get_entries_see_the_transaction(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    existing = create(client, staff, patient(name=[{"family": "Known"}]))
    pat_urn = urn()
    body = bundle(
        "transaction",
        entry("GET", f"Patient/{existing}"),
        entry(
            "POST",
            "Patient",
            patient(identifier=[{"system": MRN, "value": "new-1"}]),
            full_url=pat_urn,
        ),
        entry("GET", f"Patient?identifier={MRN}|new-1"),
        entry("GET", "Patient/pat-missing"),
    )
    r = client.post(BASE, json=body, headers=staff)
    # a GET that finds nothing inside a transaction fails the transaction, or reports 404
    if r.status_code != 200:
        assert r.status_code == 404
        assert total(client, staff, "Patient") == 1
        body["entry"].pop()
        r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["entry"]
    assert status_code(items[0]) == 200
    assert items[0]["resource"]["id"] == existing
    assert items[0]["resource"]["name"] == [{"family": "Known"}]
    assert status_code(items[1]) == 201
    new_id = items[1]["resource"]["id"]
    searchset = items[2]["resource"]
    assert status_code(items[2]) == 200
    assert searchset["type"] == "searchset"
    assert [e["resource"]["id"] for e in searchset["entry"]] == [new_id]


def test_transaction_response_keeps_the_request_order(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    p_urn = urn()
    body = bundle(
        "transaction",
        entry("GET", "Patient?_summary=count"),
        entry("POST", "ServiceRequest", service_request("x", subject={"reference": p_urn})),
        entry("POST", "Patient", patient(), full_url=p_urn),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["entry"]
    assert items[0]["resource"]["resourceType"] == "Bundle"
    assert items[0]["resource"]["total"] == 1  # GETs run after the writes
    assert items[1]["resource"]["resourceType"] == "ServiceRequest"
    assert items[2]["resource"]["resourceType"] == "Patient"


# ---------------------------------------------------------------------------- batch
def test_batch_reports_each_entry_and_keeps_the_good_ones(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient())
    body = bundle(
        "batch",
        entry(
            "POST",
            "ServiceRequest",
            service_request(pid, identifier=[{"system": "urn:x", "value": "good"}]),
        ),
        entry("POST", "ServiceRequest", service_request(pid, status="bogus")),
        entry("POST", "ServiceRequest", service_request("pat-nobody")),
        entry("POST", "Encounter", encounter("pat-nobody")),
        entry("POST", "ServiceRequest", service_request(pid, status="active")),
        entry("GET", f"Patient/{pid}"),
    )
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 200, r.get_json()
    resp = r.get_json()
    assert resp["type"] == "batch-response"
    good, bad, no_patient, dangling, not_draft, read = resp["entry"]
    assert status_code(good) == 201
    assert status_code(bad) == 400
    assert outcome_codes(bad) == ["VALIDATION_ERROR"]
    assert "ServiceRequest.status" in expressions(bad)
    # an order for a patient that does not exist: the order workflow's 404
    assert status_code(no_patient) == 404
    assert outcome_codes(no_patient) == ["PATIENT_NOT_FOUND"]
    # any other resource with a dangling reference: 400 naming the element
    assert status_code(dangling) == 400
    assert "VALIDATION_ERROR" in outcome_codes(dangling)
    assert "Encounter.subject" in expressions(dangling)
    # orders are created as drafts only
    assert status_code(not_draft) == 400
    assert "ServiceRequest.status" in expressions(not_draft)
    assert status_code(read) == 200
    assert read["resource"]["id"] == pid
    good_id = good["resource"]["id"]
    assert client.get(f"{BASE}/ServiceRequest/{good_id}", headers=staff).status_code == 200
    assert total(client, staff, "ServiceRequest") == 1
    assert total(client, staff, "ServiceRequest", "identifier=urn:x|good") == 1
    assert total(client, staff, "Encounter") == 0


def test_batch_entry_errors_carry_their_own_status(
    client: FlaskClient, headers: TokenFactory
) -> None:
    nurse = headers("NURSE")
    admin = headers("ADMIN")
    pid = create(client, admin, patient())
    body = bundle(
        "batch",
        entry("POST", "ServiceRequest", service_request(pid)),
        entry("GET", f"Patient/{pid}"),
        entry("GET", "Patient/pat-nobody"),
        entry("DELETE", f"Patient/{pid}"),
    )
    r = client.post(BASE, json=body, headers=nurse)
    assert r.status_code == 200, r.get_json()
    statuses = [status_code(e) for e in r.get_json()["entry"]]
    assert statuses == [403, 200, 404, 405]
    assert total(client, admin, "ServiceRequest") == 0


# ---------------------------------------------------------------------------- malformed bundles
@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Bundle", "type": "searchset"},
        {"resourceType": "Patient"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        },
        {"resourceType": "Bundle", "type": "transaction", "entry": "nope"},
    ],
    ids=["collection", "searchset", "not-a-bundle", "entry-without-request", "entry-not-a-list"],
)
def test_malformed_bundle_is_400_and_stores_nothing(
    client: FlaskClient, staff: dict[str, str], body: dict[str, Any]
) -> None:
    r = client.post(BASE, json=body, headers=staff)
    assert r.status_code == 400
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert counts(client, staff) == {
        "Patient": 0,
        "ServiceRequest": 0,
        "MedicationRequest": 0,
        "Provenance": 0,
    }


def test_get_on_the_base_is_not_allowed(client: FlaskClient, staff: dict[str, str]) -> None:
    r = client.get(BASE, headers=staff)
    assert r.status_code in (400, 404, 405)
    assert r.get_json()["resourceType"] == "OperationOutcome"
