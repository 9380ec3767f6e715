"""Small builders of valid FHIR resources for tests."""

from __future__ import annotations

from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def patient(pid: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1970-01-01",
        **extra,
    }
    if pid:
        res["id"] = pid
    return res


def service_request(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [
            {"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC panel"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-01-02T10:00:00Z",
        **extra,
    }


def medication_request(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "308191", "display": "amoxicillin 500 MG Oral Capsule"}
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-01-02T10:00:00Z",
        **extra,
    }


# --- builders added for the FHIR REST tests (tests/api/test_fhir_*.py) --------------------

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def encounter(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{patient_id}"},
        **extra,
    }


def allergy_intolerance(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
        "code": {"coding": [{"system": RXNORM, "code": "7980", "display": "penicillin G"}]},
        "patient": {"reference": f"Patient/{patient_id}"},
        **extra,
    }


def nutrition_order(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "NutritionOrder",
        "status": "draft",
        "intent": "order",
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2026-01-02T10:00:00Z",
        "oralDiet": {"type": [{"text": "soft diet"}]},
        **extra,
    }


def task(patient_id: str, focus: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-01-02T10:00:00Z",
        **extra,
    }
    if focus:
        res["focus"] = {"reference": focus}
    return res


def plan_definition(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PlanDefinition",
        "status": "active",
        "name": "SepsisBundle",
        "title": "Sepsis bundle",
        **extra,
    }


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """A batch or transaction Bundle; build entries with `entry(...)`."""
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(
    method: str,
    url: str,
    resource: dict[str, Any] | None = None,
    *,
    full_url: str | None = None,
    if_none_exist: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        out["resource"] = resource
    if full_url:
        out["fullUrl"] = full_url
    if if_none_exist:
        out["request"]["ifNoneExist"] = if_none_exist
    return out
