"""Legacy ↔ FHIR mapping: round trips for every order type, plus the read-side pieces
(status, alerts, referral tracking, history, order sets)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app.auth import Principal
from app.cds.alerts import Alert
from app.domain.fhir_models import validate_resource
from app.domain.ids import from_legacy, to_legacy
from app.domain.order_types import ORDER_TYPES, REFERRAL_STATUS_SYSTEM, is_referral
from app.legacy_api import mapping as m
from app.legacy_api import schemas
from app.legacy_api.mapping.common import (
    CLIENT_MUTATION_SYSTEM,
    DETAIL_BLOCKS,
    LEGACY_EXT,
    RXNORM,
    SNOMED,
)
from app.legacy_api.mapping.frequency import GTS_ABBREVIATION, frequency_of, parse_frequency
from app.legacy_api.mapping.frequency import frequency_problem as schemas_frequency_problem
from app.services import alerts as alert_store
from tests.seed_examples import SEED_ORDER_SET

NOW = "2026-04-18T09:00:00.000Z"
LATER = "2026-04-18T10:30:00.000Z"
PATIENT, ENCOUNTER = "pat_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3", "enc_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3"
AMOX = {"system": RXNORM, "code": "308191", "display": "Amoxicillin 500 MG Oral Capsule"}

PAYLOADS: dict[str, dict[str, Any]] = {
    "medication": {
        "orderType": "medication",
        "orderCode": dict(AMOX),
        "medicationDetail": {
            "medicationCode": dict(AMOX),
            "dose": 500,
            "doseUnit": "mg",
            "route": "oral",
            "frequency": "TDS",
            "durationDays": 7,
            "prn": False,
        },
    },
    "laboratory": {
        "orderType": "laboratory",
        "orderCode": {"system": "http://loinc.org", "code": "58410-2", "display": "CBC"},
        "labDetail": {
            "priority": "urgent",
            "specimenType": "venous blood",
            "fastingRequired": True,
            "collectionDateTime": "2026-04-19T07:00:00Z",
        },
    },
    "lab": {
        "orderType": "lab",
        "orderCode": {"system": "LOINC", "code": "2345-7", "display": "Glucose"},
        "labDetail": {"priority": "stat", "fastingRequired": False},
    },
    "radiology": {
        "orderType": "radiology",
        "orderCode": {"system": "http://loinc.org", "code": "24627-2", "display": "Chest CT"},
        "radiologyDetail": {
            "modality": "CT",
            "bodySite": "chest",
            "contrast": True,
            "clinicalIndication": "Suspected pulmonary embolism",
        },
    },
    "procedure": {
        "orderType": "procedure",
        "orderCode": {"system": SNOMED, "code": "80146002", "display": "Appendectomy"},
        "procedureDetail": {
            "bodySite": "appendix",
            "scheduledDateTime": "2026-04-20T08:30:00+01:00",
        },
    },
    "referral": {
        "orderType": "referral",
        "orderCode": {"system": SNOMED, "code": "306206005", "display": "Referral to service"},
        "referralDetail": {
            "referralType": "internal",
            "referToFacilityId": "fac_02J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
            "referToSpecialty": "Cardiology",
            "urgency": "urgent",
            "clinicalSummary": "Suspected atrial fibrillation; ECG attached",
        },
    },
    "nursing": {
        "orderType": "nursing",
        "orderCode": {"system": SNOMED, "code": "225358003", "display": "Wound care"},
        "nursingDetail": {"instructions": "Dress wound, check for exudate", "frequency": "Q4H PRN"},
    },
    "activity": {
        "orderType": "activity",
        "orderCode": {"system": SNOMED, "code": "129006008", "display": "Walking"},
        "activityDetail": {"activityType": "ambulation", "instructions": "Walk with assistance"},
    },
    "diet": {
        "orderType": "diet",
        "orderCode": {"system": SNOMED, "code": "160670007", "display": "Diabetic diet"},
        "dietDetail": {
            "dietType": "Diabetic 1800 kcal",
            "texture": "minced and moist",
            "fluidRestrictionMl": 1500,
            "supplements": ["Ensure Plus", "Thickener"],
        },
    },
}


def create_payload(order_type: str, **extra: Any) -> dict[str, Any]:
    body = {
        "patientId": PATIENT,
        "encounterId": ENCOUNTER,
        **copy.deepcopy(PAYLOADS[order_type]),
        "priority": "routine",
        "notes": "Ordered on the ward round",
        "clientMutationId": f"key-{order_type}",
    }
    body.update(extra)
    return schemas.load(schemas.CreateOrderSchema, body)


def stored(
    resource: dict[str, Any], version: int = 1, at: str = NOW, **changes: Any
) -> dict[str, Any]:
    """The resource as the repository returns it (id, meta), via JSON like the database."""
    doc = {**resource, **changes, "meta": {"versionId": str(version), "lastUpdated": at}}
    doc.setdefault("id", "ord-01J8Z3Q4R5S6T7V8W9X0Y1Z2A3")
    return orjson.loads(orjson.dumps(doc))


def assert_sent_back(sent: Any, got: Any, path: str = "") -> None:
    """Every field the client sent comes back, equal (the response may add fields)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), path
        for key, value in sent.items():
            assert key in got, f"{path}.{key} missing"
            assert_sent_back(value, got[key], f"{path}.{key}")
    else:
        assert got == sent, f"{path}: sent {sent!r}, got {got!r}"


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("order_type", sorted(PAYLOADS))
def test_round_trip_every_order_type(order_type: str) -> None:
    payload = create_payload(order_type)
    resource = m.order_to_fhir(payload, now=NOW)
    otype = ORDER_TYPES[order_type]
    assert resource["resourceType"] == otype.resource_type == m.resource_type_of(order_type)
    assert validate_resource(otype.resource_type, resource) is resource
    back = m.order_from_fhir(stored(resource))
    assert_sent_back(payload, back)
    assert back["orderType"] == order_type
    assert back["status"] == "draft" and back["version"] == 1
    assert back["orderId"] == "ord_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3"
    assert back["createdAt"] == NOW and back["updatedAt"] == NOW
    assert back["cdsAlerts"] == [] and back["history"] == []


@pytest.mark.parametrize("order_type", sorted(PAYLOADS))
def test_minimal_payload_round_trips(order_type: str) -> None:
    block = DETAIL_BLOCKS[order_type]
    payload = schemas.load(
        schemas.CreateOrderSchema,
        {
            "patientId": "p1",
            "encounterId": "e1",
            "orderType": order_type,
            "orderCode": PAYLOADS[order_type]["orderCode"],
            block: {},
        },
    )
    resource = m.order_to_fhir(payload, now=NOW)
    validate_resource(resource["resourceType"], resource)
    back = m.order_from_fhir(stored(resource))
    assert_sent_back(payload, back)
    assert "priority" not in back and "notes" not in back and "clientMutationId" not in back


def test_fhir_elements_of_a_medication_order() -> None:
    resource = m.order_to_fhir(create_payload("medication"), now=NOW, rid="ord-1")
    assert resource["id"] == "ord-1"
    assert resource["subject"] == {"reference": f"Patient/{from_legacy(PATIENT)}"}
    assert resource["encounter"] == {"reference": f"Encounter/{from_legacy(ENCOUNTER)}"}
    assert resource["identifier"] == [{"system": CLIENT_MUTATION_SYSTEM, "value": "key-medication"}]
    assert resource["status"] == "draft" and resource["intent"] == "order"
    assert resource["authoredOn"] == NOW and resource["priority"] == "routine"
    assert resource["note"] == [{"text": "Ordered on the ward round"}]
    assert resource["medicationCodeableConcept"] == {"coding": [AMOX]}
    dose = resource["dosageInstruction"][0]
    assert dose["doseAndRate"] == [
        {
            "doseQuantity": {
                "value": 500,
                "unit": "mg",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            }
        }
    ]
    assert dose["route"] == {
        "text": "oral",
        "coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}],
    }
    assert dose["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert dose["timing"]["code"]["coding"] == [{"system": GTS_ABBREVIATION, "code": "TID"}]
    assert dose["asNeededBoolean"] is False
    assert resource["dispenseRequest"]["expectedSupplyDuration"] == {
        "value": 7,
        "unit": "days",
        "system": "http://unitsofmeasure.org",
        "code": "d",
    }
    assert "extension" not in resource  # nothing needed a legacy extension


def test_service_request_elements() -> None:
    lab = m.order_to_fhir(create_payload("laboratory"), now=NOW)
    assert lab["category"] == ORDER_TYPES["laboratory"].category()
    assert lab["code"]["coding"] == [PAYLOADS["laboratory"]["orderCode"]]
    assert lab["occurrenceDateTime"] == "2026-04-19T07:00:00Z"
    assert lab["priority"] == "routine"  # top-level priority; the lab's own one kept aside
    urls = {e["url"] for e in lab["extension"]}
    assert urls == {
        f"{LEGACY_EXT}labDetail.priority",
        f"{LEGACY_EXT}labDetail.specimenType",
        f"{LEGACY_EXT}labDetail.fastingRequired",
    }
    rad = m.order_to_fhir(create_payload("radiology"), now=NOW)
    assert rad["orderDetail"][0]["coding"][0]["code"] == "CT"
    assert rad["bodySite"] == [{"text": "chest"}]
    assert rad["reasonCode"] == [{"text": "Suspected pulmonary embolism"}]
    ref = m.order_to_fhir(create_payload("referral"), now=NOW)
    assert is_referral(ref)
    assert ref["performer"] == [{"reference": "Organization/fac-02J8Z3Q4R5S6T7V8W9X0Y1Z2A3"}]
    assert ref["performerType"] == {"text": "Cardiology"}
    assert ref["priority"] == "urgent"  # the referral's urgency is its priority
    nursing = m.order_to_fhir(create_payload("nursing"), now=NOW)
    assert nursing["occurrenceTiming"]["repeat"] == {"frequency": 1, "period": 4, "periodUnit": "h"}
    assert nursing["asNeededBoolean"] is True
    activity = m.order_to_fhir(create_payload("activity"), now=NOW)
    assert activity["patientInstruction"] == "Walk with assistance"


def test_diet_elements() -> None:
    diet = m.order_to_fhir(create_payload("diet", priority="urgent"), now=NOW)
    assert diet["patient"] == {"reference": f"Patient/{from_legacy(PATIENT)}"}
    assert diet["dateTime"] == NOW and "priority" not in diet
    oral = diet["oralDiet"]
    assert oral["type"] == [
        {"coding": [PAYLOADS["diet"]["orderCode"]], "text": "Diabetic 1800 kcal"}
    ]
    assert oral["texture"] == [{"modifier": {"text": "minced and moist"}}]
    assert oral["nutrient"][0]["amount"]["value"] == 1500
    assert diet["supplement"] == [{"productName": "Ensure Plus"}, {"productName": "Thickener"}]
    assert m.order_from_fhir(stored(diet))["priority"] == "urgent"


def test_conflicting_values_are_kept() -> None:
    """Values that share one FHIR element but differ all come back as sent."""
    cases = [
        create_payload("laboratory", priority="asap"),  # labDetail.priority urgent
        create_payload("referral", priority="stat"),  # urgency urgent
        create_payload("referral", priority="urgent"),  # the same: no extension
        create_payload(
            "medication",
            orderCode={"system": RXNORM, "code": "723", "display": "amoxicillin"},
        ),
    ]
    for payload in cases:
        resource = m.order_to_fhir(payload, now=NOW)
        validate_resource(resource["resourceType"], resource)
        assert_sent_back(payload, m.order_from_fhir(stored(resource)))


def test_short_system_names_are_canonical_in_fhir_and_unchanged_in_legacy() -> None:
    payload = create_payload("lab")
    resource = m.order_to_fhir(payload, now=NOW)
    coding = resource["code"]["coding"][0]
    assert coding["system"] == "http://loinc.org"
    assert m.order_from_fhir(stored(resource))["orderCode"]["system"] == "LOINC"
    assert m.order_from_fhir(stored(resource))["orderType"] == "lab"


def test_payload_without_priority_on_detail_only() -> None:
    body = create_payload("laboratory")
    del body["priority"]
    resource = m.order_to_fhir(body, now=NOW)
    assert resource["priority"] == "urgent"
    back = m.order_from_fhir(stored(resource))
    assert back["labDetail"]["priority"] == "urgent"


@pytest.mark.parametrize(
    ("frequency", "code", "repeat", "as_needed"),
    [
        ("OD", "QD", {"frequency": 1, "period": 1, "periodUnit": "d"}, False),
        ("BD", "BID", {"frequency": 2, "period": 1, "periodUnit": "d"}, False),
        ("BID", "BID", {"frequency": 2, "period": 1, "periodUnit": "d"}, False),
        ("TDS", "TID", {"frequency": 3, "period": 1, "periodUnit": "d"}, False),
        ("TID", "TID", {"frequency": 3, "period": 1, "periodUnit": "d"}, False),
        ("QDS", "QID", {"frequency": 4, "period": 1, "periodUnit": "d"}, False),
        ("QID", "QID", {"frequency": 4, "period": 1, "periodUnit": "d"}, False),
        ("Q4H", "Q4H", {"frequency": 1, "period": 4, "periodUnit": "h"}, False),
        ("Q6H", "Q6H", {"frequency": 1, "period": 6, "periodUnit": "h"}, False),
        ("q8h", "Q8H", {"frequency": 1, "period": 8, "periodUnit": "h"}, False),
        ("Q12H", None, {"frequency": 1, "period": 12, "periodUnit": "h"}, False),
        ("Q30MIN", None, {"frequency": 1, "period": 30, "periodUnit": "min"}, False),
        ("NOCTE", "BED", {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]}, False),
        ("STAT", None, {"count": 1}, False),
        ("PRN", None, None, True),
        ("Q4H PRN", "Q4H", {"frequency": 1, "period": 4, "periodUnit": "h"}, True),
        # Issue 11 item 3: weekly and n-daily forms (methotrexate once weekly).
        ("WEEKLY", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}, False),
        ("QW", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}, False),
        ("qw", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}, False),
        ("Q1W", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}, False),
        ("Q2W", None, {"frequency": 1, "period": 2, "periodUnit": "wk"}, False),
        ("Q1D", "QD", {"frequency": 1, "period": 1, "periodUnit": "d"}, False),
        ("Q2D", "QOD", {"frequency": 1, "period": 2, "periodUnit": "d"}, False),
        ("Q3D", None, {"frequency": 1, "period": 3, "periodUnit": "d"}, False),
        ("QW PRN", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}, True),
    ],
)
def test_frequency_table(
    frequency: str, code: str | None, repeat: dict[str, Any] | None, as_needed: bool
) -> None:
    parsed = parse_frequency(frequency)
    assert parsed.as_needed is as_needed
    assert parsed.timing.get("repeat") == repeat
    assert parsed.timing["code"]["text"] == frequency
    codes = [c["code"] for c in parsed.timing["code"].get("coding", [])]
    assert codes == ([code] if code else [])
    detail = {"dose": 1, "doseUnit": "tablet", "frequency": frequency}
    payload = create_payload("medication", medicationDetail=detail)
    resource = m.order_to_fhir(payload, now=NOW)
    validate_resource("MedicationRequest", resource)
    dose = resource["dosageInstruction"][0]
    assert dose.get("asNeededBoolean", False) is as_needed
    assert "system" not in dose["doseAndRate"][0]["doseQuantity"]  # "tablet" is not UCUM
    assert_sent_back(payload, m.order_from_fhir(stored(resource)))


def test_unknown_frequency_is_refused_by_the_mapping_too() -> None:
    with pytest.raises(ValueError):
        parse_frequency("every so often")


@pytest.mark.parametrize("text", ["Q0W", "Q0D", "Q100W", "Q²H", "Q٣D", "FORTNIGHTLY", "Q2 W"])
def test_unknown_or_non_ascii_frequency_lists_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_frequency(text)
    problem = schemas_frequency_problem(text)
    assert problem is not None
    if "known" in problem:
        assert "WEEKLY/QW" in problem and "QnW" in problem and "QnD" in problem


@pytest.mark.parametrize(
    ("timing", "legacy"),
    [
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, "QW"),
        ({"repeat": {"frequency": 1, "period": 2, "periodUnit": "wk"}}, "Q2W"),
        ({"repeat": {"frequency": 1, "period": 3, "periodUnit": "d"}}, "Q3D"),
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}, "OD"),
        ({"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}, "TID"),
        ({"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}}, "Q4H"),
        ({"repeat": {"count": 1}}, "STAT"),
        ({"code": {"coding": [{"system": GTS_ABBREVIATION, "code": "WK"}]}}, "QW"),
        ({"code": {"coding": [{"system": GTS_ABBREVIATION, "code": "QOD"}]}}, "Q2D"),
        ({"repeat": {"frequency": 2, "period": 3, "periodUnit": "wk"}}, None),
    ],
)
def test_fhir_timing_back_to_legacy(timing: dict[str, Any], legacy: str | None) -> None:
    """A Timing written by a FHIR client (no legacy text) still reads back as a legacy
    frequency, and that frequency parses to the same repeat."""
    assert frequency_of(timing) == legacy
    if legacy is not None and "repeat" in timing:
        assert parse_frequency(legacy).timing["repeat"] == timing["repeat"]


# ---------------------------------------------------------------- status and responses
@pytest.mark.parametrize(
    ("order_type", "fhir_status", "legacy"),
    [
        ("laboratory", "revoked", "cancelled"),
        ("diet", "revoked", "cancelled"),
        ("medication", "cancelled", "cancelled"),
        ("medication", "stopped", "cancelled"),
        ("medication", "active", "active"),
        ("referral", "on-hold", "on-hold"),
        ("radiology", "completed", "completed"),
        ("nursing", "entered-in-error", "entered-in-error"),
    ],
)
def test_status_mapping(order_type: str, fhir_status: str, legacy: str) -> None:
    resource = stored(
        m.order_to_fhir(create_payload(order_type), now=NOW), 3, LATER, status=fhir_status
    )
    assert m.legacy_status(fhir_status) == legacy
    assert m.order_from_fhir(resource)["status"] == legacy
    assert m.mutation_response(resource) == {
        "orderId": to_legacy(resource["id"]),
        "status": legacy,
        "version": 3,
    }
    assert fhir_status in m.FHIR_STATUSES[legacy]


def test_created_response_has_the_seed_shape() -> None:
    resource = stored(m.order_to_fhir(create_payload("medication"), now=NOW))
    issue = alert_store.build(
        Alert("DDI-AMOX-WARFARIN", "warning", "Potential interaction", "DRG", "warfarin"),
        patient_id=from_legacy(PATIENT),
        order_ref=f"MedicationRequest/{resource['id']}",
        now=datetime(2026, 4, 18, 9, tzinfo=UTC),
    )
    body = m.created_response(resource, [issue])
    assert body == {
        "orderId": "ord_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
        "patientId": PATIENT,
        "orderType": "medication",
        "status": "draft",
        "cdsAlerts": [
            {
                "alertId": to_legacy(issue["id"]),
                "level": "warning",
                "ruleId": "DDI-AMOX-WARFARIN",
                "message": "Potential interaction",
                "acknowledged": False,
            }
        ],
        "version": 1,
        "createdAt": NOW,
    }
    assert body["cdsAlerts"][0]["alertId"].startswith("cds_")


# ---------------------------------------------------------------- alerts
def test_alert_mapping_open_acknowledged_resolved() -> None:
    principal = Principal(
        sub="dr-house", tenant_id="t", roles=frozenset({"CLINICIAN"}), tenants=frozenset({"t"})
    )
    now = datetime(2026, 4, 18, 9, 30, tzinfo=UTC)
    issue = alert_store.build(
        Alert("ALLERGY-SAME-CLASS", "warning", "Ampicillin allergy", "ALGY", "allergy:a1"),
        patient_id="pat-1",
        order_ref="MedicationRequest/ord-1",
        now=now,
    )
    validate_resource("DetectedIssue", issue)
    assert m.alert_to_legacy(issue) == {
        "alertId": to_legacy(issue["id"]),
        "level": "warning",
        "ruleId": "ALLERGY-SAME-CLASS",
        "message": "Ampicillin allergy",
        "acknowledged": False,
    }
    acked = alert_store.acknowledged(issue, principal, "benefit outweighs risk", now)
    assert m.alert_to_legacy(acked) == {
        "alertId": to_legacy(issue["id"]),
        "level": "warning",
        "ruleId": "ALLERGY-SAME-CLASS",
        "message": "Ampicillin allergy",
        "acknowledged": True,
        "acknowledgedBy": "dr-house",
        "acknowledgedAt": "2026-04-18T09:30:00.000Z",
        "reason": "benefit outweighs risk",
    }
    gone = alert_store.resolved(acked, now)
    assert m.alert_to_legacy(gone)["resolved"] is True
    assert "resolved" not in m.alert_to_legacy(issue)
    hard = alert_store.build(
        Alert("ALLERGY-DRUG", "hard-stop", "Penicillin allergy (high)", "ALGY", "allergy:a2"),
        patient_id="pat-1",
        order_ref="MedicationRequest/ord-1",
        now=now,
    )
    resource = stored(m.order_to_fhir(create_payload("medication"), now=NOW), 2)
    order = m.order_from_fhir(resource, alerts=[acked, hard])
    assert [a["level"] for a in order["cdsAlerts"]] == ["warning", "hard-stop"]
    assert m.acknowledge_response(acked, resource) == {
        "alertId": to_legacy(issue["id"]),
        "acknowledged": True,
        "version": 2,
    }


# ---------------------------------------------------------------- referral tracking
def _task(business: str | None, appointment: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": "task-01J",
        "status": "requested",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ord-01J8Z3Q4R5S6T7V8W9X0Y1Z2A3"},
        "for": {"reference": "Patient/pat-1"},
    }
    if business is not None:
        task["businessStatus"] = {
            "coding": [{"system": REFERRAL_STATUS_SYSTEM, "code": business}],
            "text": business,
        }
    if appointment is not None:
        task["output"] = [
            {
                "type": {"text": "appointment"},
                "valueReference": {"reference": f"Appointment/{appointment}"},
            }
        ]
    validate_resource("Task", task)
    return task


def test_referral_status_from_the_task() -> None:
    payload = create_payload("referral")
    resource = stored(m.order_to_fhir(payload, now=NOW))
    draft = m.order_from_fhir(resource)["referralDetail"]
    assert draft["referralStatus"] is None and draft["scheduledAppointmentId"] is None
    active = stored(resource, 2, LATER, status="active")
    pending = m.order_from_fhir(active, task=_task("pending_scheduling"))
    assert pending["referralDetail"]["referralStatus"] == "pending_scheduling"
    assert pending["referralDetail"]["scheduledAppointmentId"] is None
    assert_sent_back(payload, pending)
    scheduled = m.order_from_fhir(active, task=_task("scheduled", "appt-01J9"))
    assert scheduled["referralDetail"]["referralStatus"] == "scheduled"
    assert scheduled["referralDetail"]["scheduledAppointmentId"] == "appt_01J9"
    assert m.referral_status(None) is None
    assert m.scheduled_appointment_id(_task(None)) is None


# ---------------------------------------------------------------- history
def _prov(
    rtype: str, rid: str, version: int, at: str, activity: str, reason: str | None
) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": f"{rtype}/{rid}/_history/{version}"}],
        "recorded": at,
        "activity": {"coding": [{"code": activity}]},
        "agent": [{"who": {"identifier": {"value": "dr-who"}, "display": "dr-who"}}],
    }
    if reason:
        prov["reason"] = [{"text": reason}]
    return prov


def test_history_from_versions_and_provenance() -> None:
    base = m.order_to_fhir(create_payload("medication"), now=NOW, rid="ord-1")
    steps = [
        ("draft", "CREATE", None),
        ("draft", "UPDATE", "alert cds-1 acknowledged: benefit outweighs risk"),
        ("active", "UPDATE", "activate"),
        ("on-hold", "UPDATE", "Patient NBM pre-surgery"),
        ("active", "UPDATE", "resume"),
        ("stopped", "UPDATE", "Patient refused medication"),
        ("entered-in-error", "UPDATE", "Ordered for wrong patient"),
    ]
    versions, provs = [], []
    for n, (status, activity, reason) in enumerate(steps, start=1):
        at = f"2026-04-18T09:0{n}:00.000Z"
        versions.append(stored(base, n, at, status=status))
        provs.append(_prov("MedicationRequest", "ord-1", n, at, activity, reason))
    provs.append(_prov("MedicationRequest", "ord-2", 1, NOW, "CREATE", "another order"))
    history = m.history_entries(reversed(versions), provs)
    assert [h.to_json() for h in history] == [
        {
            "version": 1,
            "status": "draft",
            "action": "create",
            "at": "2026-04-18T09:01:00.000Z",
            "by": "dr-who",
            "reason": None,
        },
        {
            "version": 2,
            "status": "draft",
            "action": "acknowledge",
            "at": "2026-04-18T09:02:00.000Z",
            "by": "dr-who",
            "reason": "benefit outweighs risk",
        },
        {
            "version": 3,
            "status": "active",
            "action": "activate",
            "at": "2026-04-18T09:03:00.000Z",
            "by": "dr-who",
            "reason": None,
        },
        {
            "version": 4,
            "status": "on-hold",
            "action": "hold",
            "at": "2026-04-18T09:04:00.000Z",
            "by": "dr-who",
            "reason": "Patient NBM pre-surgery",
        },
        {
            "version": 5,
            "status": "active",
            "action": "resume",
            "at": "2026-04-18T09:05:00.000Z",
            "by": "dr-who",
            "reason": None,
        },
        {
            "version": 6,
            "status": "cancelled",
            "action": "cancel",
            "at": "2026-04-18T09:06:00.000Z",
            "by": "dr-who",
            "reason": "Patient refused medication",
        },
        {
            "version": 7,
            "status": "entered-in-error",
            "action": "correction",
            "at": "2026-04-18T09:07:00.000Z",
            "by": "dr-who",
            "reason": "Ordered for wrong patient",
        },
    ]
    order = m.order_from_fhir(versions[-1], history=history)
    assert order["createdAt"] == "2026-04-18T09:01:00.000Z"
    assert order["updatedAt"] == "2026-04-18T09:07:00.000Z"
    assert order["status"] == "entered-in-error" and order["version"] == 7
    assert order["history"][0]["action"] == "create" and len(order["history"]) == 7


def test_history_without_provenance_uses_meta() -> None:
    base = m.order_to_fhir(create_payload("laboratory"), now=NOW, rid="ord-9")
    history = m.history_entries(
        [stored(base, 1, NOW), stored(base, 2, LATER, status="revoked")], []
    )
    assert [(h.version, h.status, h.action, h.at, h.by) for h in history] == [
        (1, "draft", "create", NOW, None),
        (2, "cancelled", "cancel", LATER, None),
    ]
    assert m.history_entries([], []) == []


# ---------------------------------------------------------------- order sets


def test_order_set_round_trip_seed() -> None:
    payload = schemas.load(schemas.OrderSetCreateSchema, SEED_ORDER_SET)
    pd = m.order_set_to_fhir(payload, rid="ords-01J8Z3Q4R5S6T7V8W9X0Y1Z2A3", now=NOW)
    validate_resource("PlanDefinition", pd)
    assert [a["definitionCanonical"] for a in pd["action"]] == ["#t1", "#t2"]
    med, lab = pd["contained"]
    assert med["kind"] == "MedicationRequest" and lab["kind"] == "ServiceRequest"
    assert med["productCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert med["dosage"][0]["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert lab["priority"] == "routine"
    pd = stored(pd)
    assert m.order_set_created_response(pd) == {
        "orderSetId": "ords_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
        "name": "Community Acquired Pneumonia Adult",
        "orderCount": 2,
    }
    back = m.order_set_from_fhir(pd)
    assert back == {"orderSetId": "ords_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3", **payload, "orderCount": 2}
    assert m.has_order_type(pd, "lab") and m.has_order_type(pd, "medication")
    assert not m.has_order_type(pd, "diet")


def test_every_template_type_round_trips_and_instantiates() -> None:
    templates = []
    for order_type, body in sorted(PAYLOADS.items()):
        templates.append({**copy.deepcopy(body), "priority": "asap", "notes": f"{order_type} note"})
    payload = schemas.load(
        schemas.OrderSetCreateSchema, {"name": "Everything", "orderTemplates": templates}
    )
    pd = stored(m.order_set_to_fhir(payload, rid="ords-1"))
    validate_resource("PlanDefinition", pd)
    assert m.templates_of(pd) == payload["orderTemplates"]
    creates = m.instantiate_payloads(pd, PATIENT, ENCOUNTER)
    assert len(creates) == len(templates)
    for create, template in zip(creates, payload["orderTemplates"], strict=True):
        loaded = schemas.load(schemas.CreateOrderSchema, create)
        resource = m.order_to_fhir(loaded, now=NOW)
        validate_resource(resource["resourceType"], resource)
        back = m.order_from_fhir(stored(resource))
        assert_sent_back(template, back)
        assert back["patientId"] == PATIENT and back["encounterId"] == ENCOUNTER


def test_fhir_authored_plan_definition_still_lists_its_templates() -> None:
    pd = {
        "resourceType": "PlanDefinition",
        "id": "ords-x",
        "status": "active",
        "title": "From an EHR",
        "contained": [
            {
                "resourceType": "ActivityDefinition",
                "id": "a",
                "status": "active",
                "kind": "MedicationRequest",
                "productCodeableConcept": {"coding": [AMOX]},
            }
        ],
        "action": [{"definitionCanonical": "#a"}, {"definitionCanonical": "#missing"}],
    }
    assert m.order_set_from_fhir(pd)["orderTemplates"] == [
        {"orderType": "medication", "orderCode": AMOX, "medicationDetail": {}}
    ]


# ---------------------------------------------------------------- list filters
def test_order_searches() -> None:
    query = schemas.load(
        schemas.OrderListQuerySchema,
        {"patientId": PATIENT, "orderType": "lab", "status": "cancelled", "from": "2026-04-01"},
    )
    assert m.order_searches(query) == [
        (
            "ServiceRequest",
            [
                ("patient", f"Patient/{from_legacy(PATIENT)}"),
                ("category", f"{SNOMED}|108252007"),
                ("status", "revoked,cancelled,stopped"),
                ("authored", "ge2026-04-01"),
            ],
        )
    ]
    every = m.order_searches({"priority": "stat"})
    assert [rtype for rtype, _ in every] == ["MedicationRequest", "ServiceRequest"]
    assert m.referral_search({"referToFacilityId": "fac_02J", "urgency": "urgent"}) == [
        ("category", f"{SNOMED}|3457005"),
        ("performer", "Organization/fac-02J"),
        ("priority", "urgent"),
    ]
