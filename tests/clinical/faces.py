"""One clinical story, told on either face: FHIR R4 (`/fhir/R4`) or the legacy API (`/api/v1`).

Patients and allergies are written on the FHIR face (as an upstream system would); orders are
created, activated and acknowledged on the face under test, and alerts are read back in that
face's own shape, reduced to `Seen(rule, level, message)` so one assertion serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient

from tests.clinical.ward import CLINICAL, RXNORM, SNOMED, VERIFICATION, Ward, issue_codes
from tests.conftest import TokenFactory
from tests.legacy_data import LegacyApi, fhir_id, legacy_id

RULE_SYSTEM = "urn:orders-service:cds-rule"
LEVEL_OF_SEVERITY = {"high": "hard-stop", "moderate": "warning", "low": "info"}
#: Legacy frequency words as FHIR Timing (what a FHIR client would send).
TIMINGS: dict[str, dict[str, Any]] = {
    "OD": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    "QDS": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
    "TDS": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
    "WEEKLY": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
    "QW": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
    "Q2D": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}},
}


@dataclass(frozen=True)
class Seen:
    rule: str
    level: str
    message: str


@dataclass
class Placed:
    """An order as the face answered its creation."""

    status: int
    alerts: list[Seen]
    handle: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None

    def rules(self) -> set[str]:
        return {a.rule for a in self.alerts}

    def of(self, rule: str) -> Seen:
        return next(a for a in self.alerts if a.rule == rule)


class Face:
    name = ""

    def __init__(self, client: FlaskClient, headers: TokenFactory) -> None:
        self.ward = Ward(client, headers)
        self.client = client

    # ------------------------------------------------------------ FHIR-side setup
    def patient(self, birth_date: str | None = None) -> str:
        """A FHIR patient id."""
        return self.ward.patient(**({"birthDate": birth_date} if birth_date else {}))

    def allergy(
        self,
        pid: str,
        code: str | None,
        *,
        system: str = RXNORM,
        criticality: str = "high",
        text: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        concept: dict[str, Any] = {}
        if code is not None:
            concept["coding"] = [{"system": system, "code": code}]
        if text is not None:
            concept["text"] = text
        body = {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
            "criticality": criticality,
            "code": concept,
            **extra,
        }
        return self.ward.ok(
            self.client.post("/fhir/R4/AllergyIntolerance", json=body, headers=self.ward.admin),
            201,
        )

    # ------------------------------------------------------------ the face under test
    def prescribe(
        self,
        pid: str,
        code: str,
        display: str | None = None,
        *,
        dose: float | None = None,
        unit: str | None = None,
        frequency: str | None = None,
        system: str = RXNORM,
    ) -> Placed:
        raise NotImplementedError

    def activate(self, placed: Placed) -> tuple[int, str | None]:
        raise NotImplementedError

    def acknowledge_warnings(self, placed: Placed) -> None:
        raise NotImplementedError

    def on_file(self, pid: str, code: str, display: str | None = None) -> Placed:
        """An active order of `code` (warnings acknowledged on the way)."""
        placed = self.prescribe(pid, code, display)
        assert placed.status == 201, placed
        self.acknowledge_warnings(placed)
        status, error = self.activate(placed)
        assert status == 200, (status, error)
        return placed


class FhirFace(Face):
    name = "fhir"

    def prescribe(
        self,
        pid: str,
        code: str,
        display: str | None = None,
        *,
        dose: float | None = None,
        unit: str | None = None,
        frequency: str | None = None,
        system: str = RXNORM,
    ) -> Placed:
        body = self.ward.medication(pid, code, display)
        body["medicationCodeableConcept"]["coding"][0]["system"] = system
        dosage: dict[str, Any] = {}
        if frequency is not None:
            dosage["timing"] = TIMINGS[frequency]
        if dose is not None:
            dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": unit}}]
        if dosage:
            dosage["route"] = {"coding": [{"system": SNOMED, "code": "26643006"}]}
            body["dosageInstruction"] = [dosage]
        return self.place(body)

    def place(self, body: dict[str, Any]) -> Placed:
        r = self.ward.create(body)
        if r.status_code == 201:
            order = r.json
            seen = [
                Seen(rule, LEVEL_OF_SEVERITY[a["severity"]], a["detail"])
                for a in self.ward.alerts(order)
                for c in a["code"]["coding"]
                if c["system"] == RULE_SYSTEM
                for rule in [c["code"]]
                if a["status"] != "cancelled"
            ]
            return Placed(201, seen, order)
        outcome = r.json
        seen = [
            Seen(c["code"], "hard-stop", i["details"]["text"])
            for i in outcome["issue"]
            for c in i.get("details", {}).get("coding", [])
            if c["system"] == RULE_SYSTEM
        ]
        codes = [c for c in issue_codes(outcome) if not c.startswith(("DDI", "ALLERGY"))]
        return Placed(r.status_code, seen, {}, codes[0] if codes else None)

    def activate(self, placed: Placed) -> tuple[int, str | None]:
        r = self.ward.activate(placed.handle)
        codes = issue_codes(r.json) if r.status_code != 200 else []
        return r.status_code, codes[0] if codes else None

    def acknowledge_warnings(self, placed: Placed) -> None:
        for alert in self.ward.alerts(placed.handle):
            if alert["severity"] == "moderate" and alert["status"] == "preliminary":
                self.ward.ok(self.ward.acknowledge(placed.handle, alert["id"]))


class LegacyFace(Face):
    name = "legacy"

    def __init__(self, client: FlaskClient, headers: TokenFactory) -> None:
        super().__init__(client, headers)
        self.api = LegacyApi(client, headers)
        self.encounters: dict[str, str] = {}

    def encounter(self, pid: str) -> str:
        """The patient's in-progress encounter (the legacy create requires one)."""
        if pid not in self.encounters:
            self.encounters[pid] = legacy_id(self.ward.encounter(pid))
        return self.encounters[pid]

    def prescribe(
        self,
        pid: str,
        code: str,
        display: str | None = None,
        *,
        dose: float | None = None,
        unit: str | None = None,
        frequency: str | None = None,
        system: str = RXNORM,
    ) -> Placed:
        coding = {"system": system, "code": code, **({"display": display} if display else {})}
        detail: dict[str, Any] = {"medicationCode": coding, "route": "oral"}
        if dose is not None:
            detail["dose"] = dose
            detail["doseUnit"] = unit
        if frequency is not None:
            detail["frequency"] = frequency
        body = {
            "patientId": legacy_id(pid),
            "encounterId": self.encounter(pid),
            "orderType": "medication",
            "orderCode": coding,
            "medicationDetail": detail,
            "priority": "routine",
        }
        r = self.api.create(body)
        data = r.get_json()
        if r.status_code == 201:
            seen = [Seen(a["ruleId"], a["level"], a["message"]) for a in data["cdsAlerts"]]
            return Placed(201, seen, data)
        error = data["error"]
        seen = [
            Seen(d["ruleId"], d["level"], d["message"])
            for d in error.get("details") or ()
            if isinstance(d, dict) and "ruleId" in d
        ]
        return Placed(r.status_code, seen, {}, error["code"])

    def activate(self, placed: Placed) -> tuple[int, str | None]:
        oid = placed.handle["orderId"]
        r = self.api.activate(oid, self.api.order(oid)["version"])
        return r.status_code, None if r.status_code == 200 else r.get_json()["error"]["code"]

    def acknowledge_warnings(self, placed: Placed) -> None:
        oid = placed.handle["orderId"]
        for alert in self.api.order(oid)["cdsAlerts"]:
            if alert["level"] == "warning" and not alert["acknowledged"]:
                version = self.api.order(oid)["version"]
                self.api.ok(self.api.acknowledge(oid, alert["alertId"], version))


def fhir_order_id(placed: Placed) -> str:
    """The FHIR id of a placed order, whichever face placed it."""
    handle = placed.handle
    return str(handle["id"]) if "id" in handle else fhir_id(handle["orderId"])
