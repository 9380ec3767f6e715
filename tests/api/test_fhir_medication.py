"""Medication, the formulary on the FHIR face: create, read, vread, update with If-Match,
history, search (`code`, `ingredient-code`, `status`, `form`, `_id`), who may do what, and bad
input answered with an OperationOutcome (never a 500, nothing stored). Both backends.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import medication_request, patient

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
BASE = "/fhir/R4/Medication"


def amox_clav() -> dict[str, Any]:
    """RxNorm 562251 amoxicillin 875 MG / clavulanate 125 MG tablet, ingredients 723 + 48203."""
    return {
        "resourceType": "Medication",
        "status": "active",
        "code": {
            "coding": [
                {
                    "system": RXNORM,
                    "code": "562251",
                    "display": "amoxicillin 875 MG / clavulanate potassium 125 MG Oral Tablet",
                }
            ]
        },
        "form": {"coding": [{"system": SNOMED, "code": "385055001", "display": "Tablet"}]},
        "ingredient": [
            {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "723"}]}},
            {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "48203"}]}},
        ],
    }


def _created(client: FlaskClient, headers: TokenFactory, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(BASE, json=body, headers=headers("ADMIN"))
    assert r.status_code == 201, r.json
    return r.json  # type: ignore[no-any-return]


def test_create_read_vread_update_and_history(client: FlaskClient, headers: TokenFactory) -> None:
    admin, doc = headers("ADMIN"), headers("CLINICIAN")
    r = client.post(BASE, json=amox_clav(), headers=admin)
    assert r.status_code == 201, r.json
    med = r.json
    assert med["id"].startswith("med-")
    assert r.headers["Location"].endswith(f"/Medication/{med['id']}/_history/1")
    assert r.headers["ETag"] == 'W/"1"'
    assert client.get(f"{BASE}/{med['id']}", headers=doc).json["code"] == med["code"]

    changed = {k: v for k, v in med.items() if k != "meta"}
    changed["status"] = "inactive"
    stale = client.put(f"{BASE}/{med['id']}", json=changed, headers={**admin, "If-Match": 'W/"7"'})
    assert stale.status_code == 412, stale.json
    assert stale.json["resourceType"] == "OperationOutcome"
    r = client.put(f"{BASE}/{med['id']}", json=changed, headers={**admin, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.json
    assert r.json["meta"]["versionId"] == "2"

    assert client.get(f"{BASE}/{med['id']}", headers=doc).json["status"] == "inactive"
    first = client.get(f"{BASE}/{med['id']}/_history/1", headers=doc)
    assert first.status_code == 200 and first.json["status"] == "active"
    history = client.get(f"{BASE}/{med['id']}/_history", headers=doc).json
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_put_with_a_client_id_creates(client: FlaskClient, headers: TokenFactory) -> None:
    body = {**amox_clav(), "id": "formulary-0042"}
    r = client.put(f"{BASE}/formulary-0042", json=body, headers=headers("ADMIN"))
    assert r.status_code == 201, r.json
    assert client.get(f"{BASE}/formulary-0042", headers=headers("NURSE")).status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("code=562251", 1),
        (f"code={RXNORM}|562251", 1),
        ("code=310965", 0),
        ("ingredient-code=723", 1),
        (f"ingredient-code={RXNORM}|48203", 1),
        ("ingredient-code=5640", 0),
        ("status=active", 1),
        ("status=inactive", 0),
        ("form=385055001", 1),
    ],
)
def test_search_parameters(
    client: FlaskClient, headers: TokenFactory, query: str, expected: int
) -> None:
    med = _created(client, headers, amox_clav())
    other = _created(
        client,
        headers,
        {"resourceType": "Medication", "code": {"coding": [{"system": RXNORM, "code": "310965"}]}},
    )
    r = client.get(
        f"{BASE}?{query}&_id={med['id']}",
        headers={**headers("CLINICIAN"), "Prefer": "handling=strict"},
    )
    assert r.status_code == 200, r.json
    assert r.json["total"] == expected, (query, r.json)
    both = client.get(f"{BASE}?_id={med['id']},{other['id']}", headers=headers("CLINICIAN"))
    assert both.json["total"] == 2


@pytest.mark.parametrize("role", ["CLINICIAN", "PRESCRIBER", "NURSE", "PATIENT"])
def test_only_an_administrator_writes_the_formulary(
    client: FlaskClient, headers: TokenFactory, role: str
) -> None:
    who = headers(role, patient_id="pat-x") if role == "PATIENT" else headers(role)
    r = client.post(BASE, json=amox_clav(), headers=who)
    assert r.status_code == 403, r.json
    med = _created(client, headers, amox_clav())
    body = {k: v for k, v in med.items() if k != "meta"}
    r = client.put(f"{BASE}/{med['id']}", json={**body, "status": "inactive"}, headers=who)
    assert r.status_code == 403, r.json
    assert client.get(f"{BASE}/{med['id']}", headers=headers("ADMIN")).json["status"] == "active"


@pytest.mark.parametrize(
    ("role", "status"),
    [("CLINICIAN", 200), ("NURSE", 200), ("ADMIN", 200), ("PRESCRIBER", 403), ("PATIENT", 404)],
)
def test_who_reads_the_formulary(
    client: FlaskClient, headers: TokenFactory, role: str, status: int
) -> None:
    """Every role that reads reads it; PRESCRIBER reads nothing (docs/security.md); a PATIENT
    token is bound to its compartment, which a Medication (no patient) is not in."""
    med = _created(client, headers, amox_clav())
    who = headers(role, patient_id="pat-x") if role == "PATIENT" else headers(role)
    r = client.get(f"{BASE}/{med['id']}", headers=who)
    assert r.status_code == status, r.json
    r = client.get(f"{BASE}?_id={med['id']}", headers=who)
    if status == 200:
        assert r.json["total"] == 1
    elif status == 404:
        assert r.status_code == 200 and r.json["total"] == 0
    else:
        assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"resourceType": "Medication", "status": "bogus"}, "Medication.status"),
        ({"resourceType": "Medication", "code": "562251"}, "Medication.code"),
        ({"resourceType": "Medication", "ingredient": [{}]}, "Medication.ingredient[0]"),
        (
            {
                "resourceType": "Medication",
                "ingredient": [
                    {
                        "itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "723"}]},
                        "isActive": "yes",
                    }
                ],
            },
            "Medication.ingredient[0].isActive",
        ),
        ({"resourceType": "Medication", "manufacturer": {"reference": "Medication/x"}}, None),
        ({"resourceType": "MedicationRequest"}, None),
        ([], None),
    ],
)
def test_bad_input_is_an_operation_outcome_and_stores_nothing(
    client: FlaskClient, headers: TokenFactory, body: Any, path: str | None
) -> None:
    admin = headers("ADMIN")
    r = client.post(BASE, json=body, headers=admin)
    assert 400 <= r.status_code < 500, r.json
    assert r.json["resourceType"] == "OperationOutcome"
    if path is not None:
        assert path in [e for i in r.json["issue"] for e in i.get("expression", [])], r.json
    assert client.get(BASE, headers=admin).json["total"] == 0


def test_orders_naming_a_medication_are_found_and_included(
    client: FlaskClient, headers: TokenFactory
) -> None:
    """`MedicationRequest?medication=` finds the orders naming a formulary entry (what to
    review before changing it); `_include` returns the Medication with them (the CDS Hooks
    `medications` prefetch asks for that), `_revinclude` the other way round."""
    admin, doc = headers("ADMIN"), headers("CLINICIAN")
    med = _created(client, headers, amox_clav())
    pid = client.post("/fhir/R4/Patient", json=patient(), headers=admin).json["id"]
    order = medication_request(pid, medicationReference={"reference": f"Medication/{med['id']}"})
    del order["medicationCodeableConcept"]
    oid = client.post("/fhir/R4/MedicationRequest", json=order, headers=doc).json["id"]
    client.post("/fhir/R4/MedicationRequest", json=medication_request(pid), headers=doc)

    found = client.get(f"/fhir/R4/MedicationRequest?medication=Medication/{med['id']}", headers=doc)
    assert [e["resource"]["id"] for e in found.json["entry"]] == [oid]
    both = client.get(
        f"/fhir/R4/MedicationRequest?patient={pid}&_include=MedicationRequest:medication",
        headers=doc,
    ).json
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in both["entry"]}
    assert modes == {("MedicationRequest", "match"), ("Medication", "include")}
    assert both["total"] == 2
    back = client.get(
        f"{BASE}?_id={med['id']}&_revinclude=MedicationRequest:medication", headers=doc
    ).json
    assert [e["resource"]["id"] for e in back["entry"]] == [med["id"], oid]
