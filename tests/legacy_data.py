"""Payload builders and a small client for the legacy `/api/v1` face (seeds/api-contracts.txt).

Patients, encounters and allergies are set up on the FHIR face (as an ADMIN would); every
order is then entered, read and changed through the legacy JSON face. Ids the tests hold
are legacy ids (`pat_01J…`); `fhir_id` / `legacy_id` convert as DESIGN §4 says.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import TokenFactory

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

AMOXICILLIN = {"system": RXNORM, "code": "308191", "display": "Amoxicillin 500 MG Oral Capsule"}
AMOXICILLIN_INGREDIENT = "723"
WARFARIN = {"system": RXNORM, "code": "855332", "display": "Warfarin Sodium 5 MG Oral Tablet"}
CBC = {"system": LOINC, "code": "58410-2", "display": "CBC panel - Blood by Automated count"}
CHEST_XRAY = {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"}

ORDER_ID = re.compile(r"^ord_[0-9A-HJKMNP-TV-Z]{26}$")
ALERT_ID = re.compile(r"^cds_[0-9A-HJKMNP-TV-Z]{26}$")
ORDER_SET_ID = re.compile(r"^ords_[0-9A-HJKMNP-TV-Z]{26}$")
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

#: The seed's 201 body of `POST /v1/orders`.
CREATED_KEYS = {"orderId", "patientId", "orderType", "status", "cdsAlerts", "version", "createdAt"}
#: A `cdsAlerts[]` entry before acknowledgement (seed; DESIGN §5).
ALERT_KEYS = {"alertId", "level", "ruleId", "message", "acknowledged"}
#: A full order adds these to the create payload's fields (DESIGN §5).
FULL_EXTRA_KEYS = {
    "orderId",
    "status",
    "version",
    "cdsAlerts",
    "createdAt",
    "updatedAt",
    "history",
}
HISTORY_KEYS = {"version", "status", "action", "at", "by", "reason"}
MUTATION_KEYS = {"orderId", "status", "version"}
LIST_KEYS = {"items", "page", "pageSize", "total"}
ERROR_KEYS = {"code", "message", "details"}
OFFLINE = {"X-Offline-Queued-At": "2026-11-21T06:15:00Z"}
Headers = dict[str, str] | None

#: The FHIR resource type and ServiceRequest category (system, code) of every order type.
FHIR_TYPE: dict[str, tuple[str, tuple[str, str] | None]] = {
    "medication": ("MedicationRequest", None),
    "diet": ("NutritionOrder", None),
    "laboratory": ("ServiceRequest", (SNOMED, "108252007")),
    "lab": ("ServiceRequest", (SNOMED, "108252007")),
    "radiology": ("ServiceRequest", (SNOMED, "363679005")),
    "procedure": ("ServiceRequest", (SNOMED, "387713003")),
    "referral": ("ServiceRequest", (SNOMED, "3457005")),
    "nursing": ("ServiceRequest", ("urn:orders-service:order-category", "nursing")),
    "activity": ("ServiceRequest", ("urn:orders-service:order-category", "activity")),
}
ORDER_RESOURCE_TYPES = ("MedicationRequest", "ServiceRequest", "NutritionOrder")
#: What any write leaves behind: counted before and after a refused request.
STORED_TYPES = (
    *ORDER_RESOURCE_TYPES,
    "DetectedIssue",
    "Task",
    "Provenance",
    "PlanDefinition",
    "RequestGroup",
)


def fhir_id(legacy: str) -> str:
    return legacy.replace("_", "-")


def legacy_id(fhir: str) -> str:
    return fhir.replace("-", "_", 1)


# ---------------------------------------------------------------------- payloads
def medication(pid: str, eid: str, code: dict[str, str] | None = None, **over: Any) -> dict:
    """The seed's medication example, with a code whose display is right (DESIGN §6)."""
    code = code or AMOXICILLIN
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": "medication",
        "orderCode": dict(code),
        "medicationDetail": {
            "medicationCode": dict(code),
            "dose": 500,
            "doseUnit": "mg",
            "route": "oral",
            "frequency": "TDS",
            "durationDays": 7,
            "prn": False,
        },
        "priority": "routine",
        "notes": "For pneumonia",
    }
    body.update(over)
    return body


def lab(pid: str, eid: str, code: dict[str, str] | None = None, **over: Any) -> dict:
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": "laboratory",
        "orderCode": dict(code or CBC),
        "labDetail": {"priority": "routine"},
    }
    body.update(over)
    return body


def radiology(pid: str, eid: str, **over: Any) -> dict:
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": "radiology",
        "orderCode": dict(CHEST_XRAY),
        "radiologyDetail": {"modality": "DX", "bodySite": "Chest"},
    }
    body.update(over)
    return body


def referral(pid: str, eid: str, **over: Any) -> dict:
    """The seed's referral example."""
    body = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": "referral",
        "orderCode": {"system": SNOMED, "code": "183519002", "display": "Referral to cardiology"},
        "referralDetail": {
            "referralType": "internal",
            "referToFacilityId": "fac_02JCARDIO",
            "referToSpecialty": "Cardiology",
            "urgency": "routine",
            "clinicalSummary": "Suspected atrial fibrillation; ECG attached",
        },
    }
    body.update(over)
    return body


def full_order(order_type: str, pid: str, eid: str, cmid: str) -> dict:
    """An order of `order_type` with every field of the create payload filled (DESIGN §5
    "detail blocks per type"), chosen so that a lossy mapping shows: short code-system
    aliases, priorities that differ between the order and its detail, date-times with an
    offset, PRN frequencies, a list of supplements."""
    common = {
        "patientId": pid,
        "encounterId": eid,
        "orderType": order_type,
        "priority": "urgent",
        "notes": f"Round-trip notes for a {order_type} order.\nSecond line.",
        "clientMutationId": cmid,
    }
    blocks: dict[str, dict[str, Any]] = {
        "medication": {
            "orderCode": {"system": "rxnorm", "code": "308191", "display": "Amoxicillin 500mg"},
            "medicationDetail": {
                "medicationCode": {
                    "system": RXNORM,
                    "code": "308191",
                    "display": "Amoxicillin 500 MG Oral Capsule",
                },
                "dose": 500,
                "doseUnit": "mg",
                "route": "oral",
                "frequency": "TDS",
                "durationDays": 7,
                "prn": False,
            },
        },
        "diet": {
            "orderCode": {"system": SNOMED, "code": "160670007", "display": "Diabetic diet"},
            "dietDetail": {
                "dietType": "Diabetic",
                "texture": "Minced and moist",
                "fluidRestrictionMl": 1500,
                "supplements": ["Ensure Plus", "Thickener"],
            },
        },
        "laboratory": {
            "orderCode": {"system": "LOINC", "code": "2345-7", "display": "Glucose"},
            "labDetail": {
                "priority": "stat",
                "specimenType": "Venous blood",
                "fastingRequired": True,
                "collectionDateTime": "2026-11-22T07:30:00Z",
            },
        },
        "lab": {
            "orderCode": {"system": LOINC, "code": "2160-0", "display": "Creatinine"},
            "labDetail": {
                "priority": "routine",
                "specimenType": "Serum",
                "fastingRequired": False,
                "collectionDateTime": "2026-11-22T08:00:00+01:00",
            },
        },
        "radiology": {
            "orderCode": {"system": LOINC, "code": "24627-2", "display": "CT Chest"},
            "radiologyDetail": {
                "modality": "CT",
                "bodySite": "Chest",
                "contrast": True,
                "clinicalIndication": "Suspected pulmonary embolism",
            },
        },
        "procedure": {
            "orderCode": {"system": "snomed", "code": "80146002", "display": "Appendectomy"},
            "procedureDetail": {
                "bodySite": "Appendix",
                "scheduledDateTime": "2026-11-23T10:30:00+02:00",
            },
        },
        "referral": {
            "orderCode": {
                "system": SNOMED,
                "code": "183519002",
                "display": "Referral to cardiology",
            },
            "referralDetail": {
                "referralType": "internal",
                "referToFacilityId": "fac_02JCARDIO",
                "referToSpecialty": "Cardiology",
                "urgency": "asap",
                "clinicalSummary": "Suspected atrial fibrillation; ECG attached",
            },
        },
        "nursing": {
            "orderCode": {"system": SNOMED, "code": "225358003", "display": "Wound care"},
            "nursingDetail": {"instructions": "Dress the wound, sterile", "frequency": "Q4H PRN"},
        },
        "activity": {
            "orderCode": {"system": SNOMED, "code": "129006008", "display": "Walking"},
            "activityDetail": {
                "activityType": "Ambulation",
                "instructions": "Walk 10 minutes with assistance, three times a day",
            },
        },
    }
    return {**common, **copy.deepcopy(blocks[order_type])}


def order_set(name: str = "Community Acquired Pneumonia Adult", *templates: dict) -> dict:
    """The seed's order-set example (with a correctly labelled amoxicillin code)."""
    return {
        "name": name,
        "description": "Standard CAP management orders",
        "orderTemplates": list(templates)
        or [
            {
                "orderType": "medication",
                "orderCode": {
                    "code": "308191",
                    "system": "rxnorm",
                    "display": "Amoxicillin 500 MG Oral Capsule",
                },
                "medicationDetail": {
                    "dose": 500,
                    "doseUnit": "mg",
                    "route": "oral",
                    "frequency": "TDS",
                    "durationDays": 7,
                },
            },
            {
                "orderType": "laboratory",
                "orderCode": {"code": "58410-2", "system": "LOINC", "display": "CBC"},
                "labDetail": {"priority": "routine"},
            },
        ],
    }


def lab_template(code: str = "2345-7", display: str = "Glucose") -> dict:
    return {
        "orderType": "laboratory",
        "orderCode": {"system": LOINC, "code": code, "display": display},
        "labDetail": {"priority": "routine"},
    }


# ---------------------------------------------------------------------- client
class LegacyApi:
    """The legacy face as a client sees it, plus FHIR-side setup and store counts."""

    def __init__(self, client: FlaskClient, headers: TokenFactory, prefix: str = "/api/v1"):
        self.client = client
        self.make_headers = headers
        self.prefix = prefix
        self._tokens: dict[str, dict[str, str]] = {}

    def as_role(self, *roles: str, **claims: Any) -> dict[str, str]:
        """Headers for a token with these roles and claims (minted once per test: signing
        a development token is the slowest thing a test here does)."""
        key = repr((roles, sorted(claims.items())))
        if key not in self._tokens:
            made = self.make_headers(*roles, **claims)
            self._tokens[key] = {**made, "Content-Type": "application/json"}
        return dict(self._tokens[key])

    @property
    def doc(self) -> dict[str, str]:
        return self.as_role("CLINICIAN")

    @property
    def admin(self) -> dict[str, str]:
        return self.as_role("ADMIN")

    @property
    def nurse(self) -> dict[str, str]:
        return self.as_role("NURSE")

    def as_patient(self, pid: str) -> dict[str, str]:
        return self.as_role("PATIENT", patient_id=pid)

    # ------------------------------------------------------------ FHIR-side setup
    def ok(self, response: TestResponse, status: int = 200) -> Any:
        assert response.status_code == status, (response.status_code, response.get_json())
        return response.get_json()

    def patient(self, **extra: Any) -> str:
        body = {"resourceType": "Patient", "name": [{"family": "Legacy"}], **extra}
        r = self.client.post("/fhir/R4/Patient", json=body, headers=self.admin)
        return legacy_id(self.ok(r, 201)["id"])

    def encounter(self, pid: str, status: str = "in-progress") -> str:
        body = {
            "resourceType": "Encounter",
            "status": status,
            "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{fhir_id(pid)}"},
        }
        r = self.client.post("/fhir/R4/Encounter", json=body, headers=self.admin)
        return legacy_id(self.ok(r, 201)["id"])

    def admitted(self, **extra: Any) -> tuple[str, str]:
        """A patient with an in-progress encounter: `(patientId, encounterId)`."""
        pid = self.patient(**extra)
        return pid, self.encounter(pid)

    def allergy(
        self, pid: str, code: str = AMOXICILLIN_INGREDIENT, criticality: str = "high"
    ) -> dict[str, Any]:
        body = {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": f"Patient/{fhir_id(pid)}"},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
            "criticality": criticality,
            "code": {"coding": [{"system": RXNORM, "code": code}]},
        }
        r = self.client.post("/fhir/R4/AllergyIntolerance", json=body, headers=self.admin)
        return self.ok(r, 201)

    def count(self, rtype: str) -> int:
        r = self.client.get(f"/fhir/R4/{rtype}?_summary=count", headers=self.admin)
        return int(self.ok(r)["total"])

    def counts(self) -> dict[str, int]:
        """How many resources of each written type the tenant holds (fresh per test)."""
        return {rtype: self.count(rtype) for rtype in STORED_TYPES}

    def fhir(self, order: dict[str, Any]) -> dict[str, Any]:
        """The stored FHIR resource of a legacy order (GET /fhir/R4/<Type>/<id>)."""
        rtype = FHIR_TYPE[order["orderType"]][0]
        r = self.client.get(f"/fhir/R4/{rtype}/{fhir_id(order['orderId'])}", headers=self.doc)
        return self.ok(r)

    def task_of(self, order: dict[str, Any]) -> dict[str, Any]:
        rtype = FHIR_TYPE[order["orderType"]][0]
        ref = f"{rtype}/{fhir_id(order['orderId'])}"
        bundle = self.ok(self.client.get(f"/fhir/R4/Task?focus={ref}", headers=self.doc))
        assert bundle["total"] == 1, bundle
        return bundle["entry"][0]["resource"]

    def complete(self, order: dict[str, Any]) -> None:
        """The performer completes the order's fulfilment Task on the FHIR face."""
        task = self.task_of(order)
        r = self.client.put(
            f"/fhir/R4/Task/{task['id']}",
            json={**task, "status": "completed"},
            headers=self.nurse,
        )
        self.ok(r)

    # ------------------------------------------------------------ legacy calls
    def url(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def post(
        self, path: str, body: Any = None, who: Headers = None, extra: Headers = None
    ) -> TestResponse:
        headers = {**(who or self.doc), **(extra or {})}
        return self.client.post(self.url(path), json=body, headers=headers)

    def put(
        self, path: str, body: Any = None, who: Headers = None, extra: Headers = None
    ) -> TestResponse:
        headers = {**(who or self.doc), **(extra or {})}
        return self.client.put(self.url(path), json=body, headers=headers)

    def get(self, path: str, who: Headers = None, **params: Any) -> TestResponse:
        return self.client.get(self.url(path), query_string=params, headers=who or self.doc)

    def create(self, body: Any, who: Headers = None, extra: Headers = None) -> TestResponse:
        return self.post("/orders", body, who, extra)

    def created(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /orders, expecting 201: the 201 body."""
        return self.ok(self.create(body), 201)

    def order(self, oid: str, who: Headers = None) -> dict[str, Any]:
        return self.ok(self.get(f"/orders/{oid}", who))

    def activate(self, oid: str, version: int | None = None, who: Headers = None) -> TestResponse:
        body = {} if version is None else {"version": version}
        return self.post(f"/orders/{oid}/activate", body, who)

    def activated(self, oid: str) -> dict[str, Any]:
        return self.ok(self.activate(oid, self.order(oid)["version"]))

    def change(
        self,
        oid: str,
        action: str,
        version: int,
        reason: str | None = "clinical reason",
        who: Headers = None,
        extra: Headers = None,
    ) -> TestResponse:
        """PUT cancel / hold / resume / correction with `{reason, version}` (resume: no reason)."""
        body: dict[str, Any] = {"version": version}
        if reason is not None and action != "resume":
            body["reason"] = reason
        return self.put(f"/orders/{oid}/{action}", body, who, extra)

    def acknowledge(
        self,
        oid: str,
        alert_id: str,
        version: int,
        reason: str | None = "Benefit outweighs risk",
        who: Headers = None,
    ) -> TestResponse:
        body: dict[str, Any] = {"version": version}
        if reason is not None:
            body["reason"] = reason
        return self.post(f"/orders/{oid}/cds-alerts/{alert_id}/acknowledge", body, who)

    def listing(self, who: Headers = None, **params: Any) -> dict[str, Any]:
        return self.ok(self.get("/orders", who, **params))


def error_of(response: TestResponse, status: int, code: str | None) -> dict[str, Any]:
    """Assert a legacy error `{"error": {"code", "message", "details"?}}` with this status
    and code (any code when None); return the `error` object."""
    body = response.get_json(silent=True)
    assert response.status_code == status, (response.status_code, body)
    assert response.mimetype == "application/json", response.mimetype
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert {"code", "message"} <= set(err) <= ERROR_KEYS, err
    assert isinstance(err["code"], str) and err["code"], err
    if code is not None:
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    return err


def fields_of(err: dict[str, Any]) -> set[str]:
    """The field paths a VALIDATION_ERROR names in its details."""
    details = err.get("details")
    assert isinstance(details, list) and details, err
    return {str(d.get("field")) for d in details if isinstance(d, dict)}
