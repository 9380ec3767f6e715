"""Issue 11, contract items on the legacy face: optional detail blocks (1), weekly and
n-daily frequencies (3) and ADMIN on the order list (16). Both backends."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.legacy_data import RXNORM, LegacyApi, error_of, fhir_id, fields_of

METHOTREXATE = {"system": RXNORM, "code": "105586", "display": "Methotrexate 2.5 MG Oral Tablet"}
CODES = {
    "radiology": {"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest"},
    "diet": {"system": "http://snomed.info/sct", "code": "160670007", "display": "Diabetic diet"},
    "procedure": {
        "system": "http://snomed.info/sct",
        "code": "80146002",
        "display": "Appendectomy",
    },
    "nursing": {"system": "http://snomed.info/sct", "code": "225358003", "display": "Wound care"},
    "activity": {"system": "http://snomed.info/sct", "code": "129006008", "display": "Walking"},
    "laboratory": {"system": "http://loinc.org", "code": "58410-2", "display": "CBC"},
}


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


@pytest.mark.parametrize("order_type", sorted(CODES))
def test_order_without_its_detail_block_is_created(api: LegacyApi, order_type: str) -> None:
    """Item 1: `orderType`, `orderCode`, `priority`, `notes` and nothing else is a valid
    order of any non-medication, non-referral type; it reads back without a block."""
    pid, eid = api.admitted()
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": order_type,
        "orderCode": CODES[order_type],
        "priority": "routine",
        "notes": "as discussed on the ward round",
    }
    created = api.created(body)
    full = api.order(created["orderId"])
    assert full["orderType"] == order_type
    assert full["notes"] == body["notes"]
    assert full["orderCode"] == body["orderCode"]


def test_block_of_another_type_is_still_refused(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": "radiology",
        "orderCode": CODES["radiology"],
        "procedureDetail": {"bodySite": "chest"},
    }
    err = error_of(api.create(body), 400, "VALIDATION_ERROR")
    assert fields_of(err) == {"procedureDetail"}


def test_medication_still_needs_its_block(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    body = {"patientId": pid, "encounterId": eid, "orderType": "medication"}
    body["orderCode"] = METHOTREXATE
    err = error_of(api.create(body), 400, "VALIDATION_ERROR")
    assert "medicationDetail" in fields_of(err)


def test_weekly_methotrexate_is_entered_and_stored_as_weekly_timing(api: LegacyApi) -> None:
    """Item 3: WEEKLY maps to Timing.repeat {1 per 1 wk} (what a CDS rule reads), and
    reads back as the client sent it."""
    pid, eid = api.admitted()
    detail = {"medicationCode": METHOTREXATE, "dose": 15, "doseUnit": "mg"}
    detail |= {"route": "oral", "frequency": "WEEKLY"}
    body = {"patientId": pid, "encounterId": eid, "orderType": "medication"}
    body |= {"orderCode": METHOTREXATE, "medicationDetail": detail}
    created = api.created(body)
    stored = api.fhir(created)
    timing = stored["dosageInstruction"][0]["timing"]
    assert timing["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "wk"}
    assert timing["code"]["coding"][0]["code"] == "WK"
    assert api.order(created["orderId"])["medicationDetail"]["frequency"] == "WEEKLY"


def test_fhir_written_weekly_timing_reads_back_as_a_legacy_frequency(
    api: LegacyApi, client: FlaskClient
) -> None:
    pid, eid = api.admitted()
    resource = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{fhir_id(pid)}"},
        "encounter": {"reference": f"Encounter/{fhir_id(eid)}"},
        "medicationCodeableConcept": {"coding": [METHOTREXATE]},
        "dosageInstruction": [
            {"timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "wk"}}}
        ],
    }
    headers = {**api.doc, "Content-Type": "application/fhir+json"}
    created = api.ok(client.post("/fhir/R4/MedicationRequest", json=resource, headers=headers), 201)
    order = api.order(created["id"].replace("-", "_", 1))
    assert order["medicationDetail"]["frequency"] == "Q2W"


@pytest.mark.parametrize("frequency", ["FORTNIGHTLY", "Q0W", "Q²H"])
def test_unknown_frequency_is_400_listing_accepted_forms(api: LegacyApi, frequency: str) -> None:
    pid, eid = api.admitted()
    detail = {"medicationCode": METHOTREXATE, "dose": 15, "doseUnit": "mg"}
    detail["frequency"] = frequency
    body = {"patientId": pid, "encounterId": eid, "orderType": "medication"}
    body |= {"orderCode": METHOTREXATE, "medicationDetail": detail}
    err = error_of(api.create(body), 400, "VALIDATION_ERROR")
    assert fields_of(err) == {"medicationDetail.frequency"}
    if frequency == "FORTNIGHTLY":
        assert "WEEKLY/QW" in err["details"][0]["message"]


def test_admin_lists_every_patients_orders_without_patient_id(api: LegacyApi) -> None:
    """Item 16: the seed's query line ("patientId required for non-admin") only makes
    sense if ADMIN may list; every other role must name the patient."""
    first, second = api.admitted(), api.admitted()
    for pid, eid in (first, second):
        api.created(
            {"patientId": pid, "encounterId": eid, "orderType": "laboratory"}
            | {"orderCode": CODES["laboratory"]}
        )
    listed = api.listing(api.admin)
    assert {i["patientId"] for i in listed["items"]} == {first[0], second[0]}
    assert listed["total"] == 2


@pytest.mark.parametrize("role", ["CLINICIAN", "NURSE", "PATIENT"])
def test_other_roles_must_name_the_patient(api: LegacyApi, role: str) -> None:
    pid, _ = api.admitted()
    who = api.as_patient(pid) if role == "PATIENT" else api.as_role(role)
    err = error_of(api.get("/orders", who), 400, "VALIDATION_ERROR")
    assert fields_of(err) == {"patientId"}


def test_prescriber_may_not_list(api: LegacyApi) -> None:
    pid, _ = api.admitted()
    error_of(api.get("/orders", api.as_role("PRESCRIBER"), patientId=pid), 403, "FORBIDDEN")
