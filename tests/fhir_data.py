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
        "category": [{"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}],
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
            "coding": [{"system": RXNORM, "code": "308191", "display": "amoxicillin 500 MG Oral Capsule"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-01-02T10:00:00Z",
        **extra,
    }
