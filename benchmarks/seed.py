"""Bulk seeding for the benchmark: the repository's own write path, batched.

Every resource goes through `app.store.repository.Repository.create`, so ids, `meta`, the
search-index rows (`extract`), `patient_id`, `status` and `sort_date` are exactly what the
server itself would store. The repository defers its inserts, so a chunk of creates on one
connection is written by `flush()` as one statement (one JSON document of rows) in one
transaction per chunk: ~50x faster than a statement and round trip per row, and far faster
than HTTP.

What the bulk path leaves out on purpose: Provenance (every API write stores one; seeded rows
have none) and the CDS gate (seeded orders are known not to raise alerts that matter here).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from app.domain.ids import new_id, to_legacy

try:
    from app.store import Repository
except ImportError:  # an A/B baseline from before app/store was split out (e.g. 9e84d25)
    from app.fhir.repository import Repository  # type: ignore[no-redef]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
BENCH_LAB = "urn:orders-service:bench-lab-code"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LAB_CATEGORY = {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}

LAB_CODES = [
    ("58410-2", "CBC panel - Blood by Automated count"),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
    ("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
    ("57021-8", "CBC W Auto Differential panel - Blood"),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma"),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
    ("5902-2", "Prothrombin time (PT)"),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma"),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
]
#: Status mix of the hot patient's orders ("most active": 1,600 of 2,000 by default).
HOT_STATUSES = ["active"] * 16 + ["draft", "completed", "on-hold", "revoked"]
OTHER_STATUSES = ["active"] * 4 + ["completed"] * 3 + ["draft"] * 2 + ["revoked", "on-hold"]

#: The CDS patients' three active medications (none interacts as a hard-stop with
#: amoxicillin) and the order the legacy phase places: amoxicillin 500 mg capsules, which
#: raises two warnings (penicillin class allergy, criticality low; amoxicillin + warfarin).
ACTIVE_MEDS = [
    ("855332", "Warfarin Sodium 5 MG Oral Tablet", "5 mg orally once daily"),
    ("29046", "lisinopril", "10 mg orally once daily"),
    ("6809", "metformin", "500 mg orally twice daily"),
]
AMOXICILLIN = {"system": RXNORM, "code": "308191", "display": "Amoxicillin 500 MG Oral Capsule"}
PENICILLIN_ALLERGY = {"system": SNOMED, "code": "764146007", "display": "Penicillin (substance)"}


class BulkLoader:
    """`add()` resources through the repository; rows are written every `chunk` resources.

    The repository defers its inserts until `flush` (one multi-row INSERT per table), so a
    chunk of creates on one connection is already the bulk path.
    """

    def __init__(self, engine: Engine, tenant: str, chunk: int = 5000) -> None:
        self.engine = engine
        self.tenant = tenant
        self.chunk = chunk
        self._conn: Connection | None = None
        self._repo: Repository | None = None
        self._pending = 0
        self.written = 0

    def add(self, resource_type: str, content: dict[str, Any], rid: str | None = None) -> str:
        rid = rid or new_id(resource_type)
        if self._repo is None:
            self._conn = self.engine.connect()
            self._conn.begin()
            self._repo = Repository(self._conn, self.tenant)
        self._repo.create(resource_type, rid, content)
        self._pending += 1
        if self._pending >= self.chunk:
            self.flush()
        return rid

    def flush(self) -> None:
        if self._repo is None or self._conn is None:
            return
        try:
            self._repo.flush()
            self._conn.commit()
        finally:
            self._conn.close()
            self._conn, self._repo = None, None
        self.written += self._pending
        self._pending = 0

    def finish(self) -> None:
        """Write what is left, then ANALYZE: a freshly loaded PostgreSQL database has no
        planner statistics until something collects them, and autovacuum may be off
        (app/store/statistics.py has what that costs)."""
        self.flush()
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")


# ---------------------------------------------------------------------- resources
def patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:orders-service:bench-mrn", "value": f"MRN{i:08d}"}],
        "name": [{"family": "Bench", "given": [f"Patient{i}"]}],
        "gender": "female" if i % 2 else "male",
        "birthDate": f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}",
    }


def encounter(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2026-01-05T08:00:00Z"},
    }


def service_request(
    pid: str, eid: str, status: str, code: tuple[str, str], n: int, *, system: str = LOINC
) -> dict[str, Any]:
    """A laboratory order of about 1 KB, shaped like what an EHR sends."""
    day = 1 + n % 28
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:orders-service:bench-placer", "value": f"PLC-{n:09d}"}],
        "status": status,
        "intent": "order",
        "category": [{"coding": [dict(LAB_CATEGORY)]}],
        "priority": "routine",
        "code": {"coding": [{"system": system, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "occurrenceDateTime": f"2026-{1 + n % 12:02d}-{day:02d}T07:30:00Z",
        "authoredOn": f"2026-{1 + n % 12:02d}-{day:02d}T06:{n % 60:02d}:00Z",
        "requester": {"display": "Dr. Benchmark, Internal Medicine"},
        "reasonCode": [{"text": "Routine monitoring during admission"}],
        "specimen": [{"display": "Venous blood, 4 mL lavender top"}],
        "note": [{"text": "Fasting sample if possible; draw before morning medications."}],
    }


def unique_lab(n: int, prefix: str) -> tuple[str, str]:
    """A code no other order of the patient has: no duplicate-order warning."""
    return (f"{prefix}-{n}", f"Benchmark lab test {prefix}-{n}")


def allergy(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "type": "allergy",
        "category": ["medication"],
        "criticality": "low",
        "code": {"coding": [dict(PENICILLIN_ALLERGY)]},
        "patient": {"reference": f"Patient/{pid}"},
        "recordedDate": "2020-03-01",
    }


def active_medication(pid: str, eid: str, code: str, display: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "authoredOn": "2026-01-05T09:00:00Z",
        "dosageInstruction": [{"text": text}],
    }


def legacy_medication(patient_legacy: str, encounter_legacy: str, cmid: str) -> dict[str, Any]:
    """The seed's medication example (tests/legacy_data.py) with a unique mutation id."""
    return {
        "patientId": patient_legacy,
        "encounterId": encounter_legacy,
        "orderType": "medication",
        "orderCode": dict(AMOXICILLIN),
        "medicationDetail": {
            "medicationCode": dict(AMOXICILLIN),
            "dose": 500,
            "doseUnit": "mg",
            "route": "oral",
            "frequency": "TDS",
            "durationDays": 7,
            "prn": False,
        },
        "priority": "routine",
        "notes": "For pneumonia",
        "clientMutationId": cmid,
    }


# ---------------------------------------------------------------------- the data set
@dataclass
class Dataset:
    tenant: str
    hot_patient: str
    hot_encounter: str
    patients: list[str]  # regular patients (not hot, not CDS)
    encounters: dict[str, str]  # patient -> in-progress encounter
    service_requests: list[str]  # every seeded ServiceRequest id (GET by id draws from these)
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    hot_patient_legacy: str = ""  # the hot patient's legacy id (`/api/v1/orders?patientId=`)
    _serial: int = 0

    def serial(self) -> int:
        self._serial += 1
        return self._serial


def seed(
    engine: Engine, tenant: str, *, scale: int, hot: int, patients: int, rng: random.Random
) -> Dataset:
    """Patients with an in-progress encounter each; `scale` ServiceRequests, `hot` of them on
    one patient (80% active), the rest spread uniformly over the other patients."""
    started = time.perf_counter()
    loader = BulkLoader(engine, tenant)
    hot = min(hot, scale)
    hot_pid = loader.add("Patient", patient(0))
    hot_eid = loader.add("Encounter", encounter(hot_pid))
    pids: list[str] = []
    encounters = {hot_pid: hot_eid}
    for i in range(1, patients + 1):
        pid = loader.add("Patient", patient(i))
        encounters[pid] = loader.add("Encounter", encounter(pid))
        pids.append(pid)
    srs: list[str] = []
    for n in range(scale):
        if n < hot:
            pid, status = hot_pid, HOT_STATUSES[n % len(HOT_STATUSES)]
        else:
            pid, status = rng.choice(pids), rng.choice(OTHER_STATUSES)
        body = service_request(pid, encounters[pid], status, rng.choice(LAB_CODES), n)
        srs.append(loader.add("ServiceRequest", body))
    loader.finish()
    data = Dataset(tenant, hot_pid, hot_eid, pids, encounters, srs)
    data.hot_patient_legacy = to_legacy(hot_pid)
    data.seconds = time.perf_counter() - started
    data.counts = {
        "Patient": patients + 1,
        "Encounter": patients + 1,
        "ServiceRequest": scale,
        "hot active": sum(1 for n in range(hot) if HOT_STATUSES[n % len(HOT_STATUSES)] == "active"),
    }
    return data


@dataclass
class Draft:
    """A draft order a client owns: id, its content (without meta) and current version."""

    id: str
    content: dict[str, Any]
    version: int = 1


def drafts(engine: Engine, data: Dataset, n: int, prefix: str, rng: random.Random) -> list[Draft]:
    """`n` draft lab orders with unique codes, spread over the regular patients."""
    loader = BulkLoader(engine, data.tenant)
    out: list[Draft] = []
    for _ in range(n):
        pid = rng.choice(data.patients)
        k = data.serial()
        body = service_request(
            pid, data.encounters[pid], "draft", unique_lab(k, prefix), 10**8 + k, system=BENCH_LAB
        )
        out.append(Draft(loader.add("ServiceRequest", body), body))
    loader.finish()
    return out


def cds_patients(engine: Engine, tenant: str, n: int) -> list[tuple[str, str]]:
    """`n` admitted patients, each with a penicillin allergy and three active medication
    orders; returns their legacy (patientId, encounterId)."""
    loader = BulkLoader(engine, tenant)
    out: list[tuple[str, str]] = []
    for i in range(n):
        pid = loader.add("Patient", patient(900_000_000 + i))
        eid = loader.add("Encounter", encounter(pid))
        loader.add("AllergyIntolerance", allergy(pid))
        for code, display, text in ACTIVE_MEDS:
            loader.add("MedicationRequest", active_medication(pid, eid, code, display, text))
        out.append((to_legacy(pid), to_legacy(eid)))
    loader.finish()
    return out


def validate_samples(samples: Iterable[dict[str, Any]]) -> None:
    """Fail fast if a generated resource would not pass the server's own validation."""
    from app.domain.fhir_models import validate_resource

    for body in samples:
        validate_resource(body["resourceType"], body)


#: Past AuditEvents seeded per ServiceRequest: a server in use has a trail far larger than its
#: orders, and appending to a near-empty `audit_events` cost reads measurably more than
#: appending to one with history (docs/performance.md, the audit compare in session 7).
AUDIT_HISTORY_PER_ORDER = 5


def audit_history(dsn: str, tenant: str, patients: list[str], n: int) -> float:
    """`n` past read events of the last 30 days, in time order, over `patients` and 200 staff
    users, written by one `INSERT … SELECT` (the trail's own table: no AuditEvent resource
    to validate). Their ids sort before any the server names (`audit-0HIST…`). Returns the
    seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO audit_events (tenant_id, id, recorded, patient_id, action, outcome,
                interaction, endpoint, agent_system, agent, client, detail)
            SELECT %(tenant)s, 'audit-0HIST' || lpad(g::text, 12, '0'),
                now() - interval '30 days' + (g * interval '30 days') / %(n)s,
                (%(patients)s::text[])[1 + mod(g * 7919, cardinality(%(patients)s::text[]))],
                'R', '0', 'read', NULL, 'urn:orders-service:token-sub',
                'staff-' || mod(g, 200), 'ehr',
                jsonb_build_object('roles', jsonb_build_array('CLINICIAN'),
                    'refs', jsonb_build_array('ServiceRequest/seeded-' || g || '/_history/1'))
            FROM generate_series(1, %(n)s) AS g
            """,
            {"tenant": tenant, "patients": patients, "n": n},
        )
    return time.perf_counter() - started
