"""Demo data for the `demo` tenant: a few patients with encounters, allergies and orders.

Written through the same services as any client (so every resource has Provenance), with
fixed ids so running it twice changes nothing.
"""

from __future__ import annotations

from typing import Any

from app.auth import Principal
from app.domain.lifecycle import Action
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.runtime import Runtime
from app.services.orders import OrderService
from app.services.resources import ResourceService
from app.services.unit_of_work import UnitOfWork

DEMO_TENANT = "demo"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
SEEDER = Principal(
    sub="demo-seed",
    tenant_id=DEMO_TENANT,
    roles=frozenset({"ADMIN", "CLINICIAN"}),
    tenants=frozenset({DEMO_TENANT}),
    issuer="urn:orders-service:demo",
)


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [_cc(SNOMED, code, display)]


def resources() -> list[dict[str, Any]]:
    pat = {"reference": "Patient/pat-demo-1"}
    enc = {"reference": "Encounter/enc-demo-1"}
    return [
        {
            "resourceType": "Patient",
            "id": "pat-demo-1",
            "gender": "female",
            "name": [{"family": "Rivera", "given": ["Ana"]}],
            "birthDate": "1956-04-12",
            "identifier": [{"system": "urn:demo:mrn", "value": "MRN-0001"}],
        },
        {
            "resourceType": "Patient",
            "id": "pat-demo-2",
            "gender": "male",
            "name": [{"family": "Okafor", "given": ["Chidi"]}],
            "birthDate": "1988-11-30",
            "identifier": [{"system": "urn:demo:mrn", "value": "MRN-0002"}],
        },
        {
            "resourceType": "Encounter",
            "id": "enc-demo-1",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": pat,
            "period": {"start": "2026-11-20T08:00:00Z"},
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "alg-demo-1",
            "patient": pat,
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "active",
                "Active",
            ),
            "criticality": "high",
            "code": _cc(RXNORM, "7980", "penicillin G"),
            "recordedDate": "2020-03-01",
        },
        {
            "resourceType": "MedicationRequest",
            "id": "ord-demo-warfarin",
            "status": "active",
            "intent": "order",
            "subject": pat,
            "encounter": enc,
            "medicationCodeableConcept": _cc(RXNORM, "855332", "warfarin sodium 5 MG Oral Tablet"),
            "authoredOn": "2026-11-20T09:00:00Z",
        },
        {
            "resourceType": "ServiceRequest",
            "id": "ord-demo-cbc",
            "status": "draft",
            "intent": "order",
            "subject": pat,
            "encounter": enc,
            "priority": "routine",
            "category": _category("108252007", "Laboratory procedure"),
            "code": _cc(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
            "authoredOn": "2026-11-20T09:05:00Z",
        },
        {
            "resourceType": "ServiceRequest",
            "id": "ord-demo-cxr",
            "status": "active",
            "intent": "order",
            "subject": pat,
            "encounter": enc,
            "priority": "urgent",
            "category": _category("363679005", "Imaging"),
            "code": _cc(LOINC, "36643-5", "XR Chest 2 Views"),
            "authoredOn": "2026-11-20T09:10:00Z",
        },
        {
            "resourceType": "NutritionOrder",
            "id": "ord-demo-diet",
            "status": "active",
            "intent": "order",
            "patient": pat,
            "encounter": enc,
            "dateTime": "2026-11-20T09:15:00Z",
            "oralDiet": {"type": [_cc(SNOMED, "160670007", "Diabetic diet")]},
        },
    ]


def seed(runtime: Runtime) -> None:
    """Clinical data by PUT (as an upstream system writes it); orders through the order
    workflow like any client: created as drafts (CDS-checked), then activated if wanted."""
    with UnitOfWork(runtime.database, SEEDER) as uow:
        if uow.repo.read("Patient", "pat-demo-1") is not None:
            return
        resources_ = ResourceService(uow)
        orders = OrderService(uow, runtime.cds)
        for resource in resources():
            rtype, rid = resource["resourceType"], resource["id"]
            if rtype not in ORDER_RESOURCE_TYPES:
                resources_.update(rtype, rid, resource, if_match=None, reason="demo data")
                continue
            orders.create(rtype, {**resource, "status": "draft"}, rid=rid, reason="demo data")
            if resource["status"] == "active":
                orders.transition(
                    rtype, rid, Action.ACTIVATE, expected_version=None, reason="demo data"
                )
