"""A tiny ward for clinical stories: patients, encounters, allergies and orders via FHIR."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import TokenFactory

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

AMOXICILLIN_500_CAP = "308191"
AMOXICILLIN = "723"
AMPICILLIN = "733"
WARFARIN = "11289"
PENICILLIN_G = "7980"
OXYCODONE_ER_10 = "1049502"


class Ward:
    def __init__(self, client: FlaskClient, headers: TokenFactory) -> None:
        self.client = client
        self.admin = headers("ADMIN")
        self.doc = headers("CLINICIAN")
        self.nurse = headers("NURSE")
        self.headers = headers

    def ok(self, response: Any, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, (response.status_code, response.json)
        return response.json  # type: ignore[no-any-return]

    def patient(self, **extra: Any) -> str:
        body = {"resourceType": "Patient", "name": [{"family": "Story"}], **extra}
        return self.ok(self.client.post("/fhir/R4/Patient", json=body, headers=self.admin), 201)[
            "id"
        ]

    def encounter(self, pid: str, status: str = "in-progress") -> str:
        body = {
            "resourceType": "Encounter",
            "status": status,
            "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        return self.ok(self.client.post("/fhir/R4/Encounter", json=body, headers=self.admin), 201)[
            "id"
        ]

    def allergy(
        self,
        pid: str,
        code: str,
        *,
        system: str = RXNORM,
        criticality: str = "high",
        verification: str = "confirmed",
    ) -> dict[str, Any]:
        body = {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "criticality": criticality,
            "code": {"coding": [{"system": system, "code": code}]},
        }
        return self.ok(
            self.client.post("/fhir/R4/AllergyIntolerance", json=body, headers=self.admin), 201
        )

    def medication(
        self, pid: str, code: str, display: str | None = None, *, status: str = "draft"
    ) -> dict[str, Any]:
        coding = {"system": RXNORM, "code": code, **({"display": display} if display else {})}
        return {
            "resourceType": "MedicationRequest",
            "status": status,
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [coding]},
            "authoredOn": "2026-11-21T09:00:00Z",
        }

    def lab(self, pid: str, loinc: str = "58410-2") -> dict[str, Any]:
        return {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "category": [{"coding": [{"system": SNOMED, "code": "108252007"}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc}]},
        }

    def create(self, body: dict[str, Any]) -> Any:
        return self.client.post(f"/fhir/R4/{body['resourceType']}", json=body, headers=self.doc)

    def order(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.ok(self.create(body), 201)

    def activate(self, order: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        current = self.read(order)
        return self.client.post(
            f"/fhir/R4/{order['resourceType']}/{order['id']}/$activate",
            headers={**(headers or self.doc), "If-Match": f'W/"{current["meta"]["versionId"]}"'},
        )

    def update(self, body: dict[str, Any], version: str) -> Any:
        """PUT `body` to its own URL as the clinician, with If-Match version `version`."""
        return self.client.put(
            f"/fhir/R4/{body['resourceType']}/{body['id']}",
            json=body,
            headers={**self.doc, "If-Match": f'W/"{version}"'},
        )

    def read(self, res: dict[str, Any]) -> dict[str, Any]:
        return self.ok(
            self.client.get(f"/fhir/R4/{res['resourceType']}/{res['id']}", headers=self.doc)
        )

    def alerts(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        ref = f"{order['resourceType']}/{order['id']}"
        bundle = self.ok(
            self.client.get(f"/fhir/R4/DetectedIssue?implicated={ref}", headers=self.doc)
        )
        return [e["resource"] for e in bundle.get("entry", [])]

    def acknowledge(
        self, order: dict[str, Any], alert_id: str, reason: str = "benefit outweighs risk"
    ) -> Any:
        current = self.read(order)
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "alert", "valueReference": {"reference": f"DetectedIssue/{alert_id}"}},
                {"name": "reason", "valueString": reason},
            ],
        }
        return self.client.post(
            f"/fhir/R4/{order['resourceType']}/{order['id']}/$acknowledge",
            json=params,
            headers={**self.doc, "If-Match": f'W/"{current["meta"]["versionId"]}"'},
        )

    def order_select(
        self,
        pid: str,
        draft: dict[str, Any],
        *,
        beside: tuple[dict[str, Any], ...] = (),
        prefetch: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The CDS Hooks order-select cards for one draft (its id: `draft-1` unless it has
        one), with `beside` in the draftOrders Bundle and an optional prefetch."""
        draft = {"id": "draft-1", **draft}
        request: dict[str, Any] = {
            "hook": "order-select",
            "hookInstance": str(uuid.uuid4()),
            "context": {
                "userId": "Practitioner/dr-1",
                "patientId": pid,
                "selections": [f"{draft['resourceType']}/{draft['id']}"],
                "draftOrders": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": r} for r in (draft, *beside)],
                },
            },
        }
        if prefetch is not None:
            request["prefetch"] = prefetch
        r = self.client.post("/cds-services/order-select-checks", json=request, headers=self.doc)
        return list(self.ok(r)["cards"])

    def count(self, rtype: str, pid: str) -> int:
        return int(
            self.ok(
                self.client.get(f"/fhir/R4/{rtype}?patient={pid}&_summary=count", headers=self.doc)
            )["total"]
        )


def rules(alerts: list[dict[str, Any]]) -> set[str]:
    return {
        c["code"]
        for a in alerts
        for c in a["code"]["coding"]
        if c["system"] == "urn:orders-service:cds-rule"
    }


def issue_codes(outcome: dict[str, Any]) -> list[str]:
    return [c["code"] for i in outcome["issue"] for c in i.get("details", {}).get("coding", [])]
