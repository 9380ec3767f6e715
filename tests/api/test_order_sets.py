"""Order sets on the FHIR face: PlanDefinition/[id]/$apply (app/services/order_sets.py)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.auth import Principal
from app.domain.fhir_models import validate_resource
from app.runtime import get_runtime
from app.services.order_sets import CATEGORY_EXT, ORDER_SET_INSTANCE, OrderSetService
from app.services.unit_of_work import UnitOfWork
from tests.clinical.ward import (
    AMOXICILLIN,
    AMOXICILLIN_500_CAP,
    LOINC,
    RXNORM,
    SNOMED,
    WARFARIN,
    Ward,
    issue_codes,
    rules,
)

PLAN_URL = "urn:orders-service:order-set:cap-adult"
LAB = {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}
COUNTED = ("MedicationRequest", "ServiceRequest", "RequestGroup", "DetectedIssue", "Provenance")


def amoxicillin_definition(ad_id: str = "amox") -> dict[str, Any]:
    return {
        "resourceType": "ActivityDefinition",
        "id": ad_id,
        "status": "active",
        "kind": "MedicationRequest",
        "title": "Amoxicillin 500mg",
        "priority": "routine",
        "productCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": AMOXICILLIN_500_CAP, "display": "Amoxicillin 500mg"}
            ]
        },
        "dosage": [
            {
                "text": "500 mg orally three times a day for 7 days",
                "route": {"text": "oral"},
                "timing": {
                    "code": {"text": "TDS"},
                    "repeat": {
                        "frequency": 3,
                        "period": 1,
                        "periodUnit": "d",
                        "boundsDuration": {
                            "value": 7,
                            "unit": "days",
                            "system": "http://unitsofmeasure.org",
                            "code": "d",
                        },
                    },
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 500,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }


def cbc_definition(ad_id: str = "cbc") -> dict[str, Any]:
    return {
        "resourceType": "ActivityDefinition",
        "id": ad_id,
        "status": "active",
        "kind": "ServiceRequest",
        "title": "CBC",
        "priority": "routine",
        "extension": [{"url": CATEGORY_EXT, "valueCodeableConcept": {"coding": [LAB]}}],
        "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC"}]},
    }


def order_set(*definitions: dict[str, Any], url: str | None = PLAN_URL) -> dict[str, Any]:
    """A PlanDefinition with the given templates, each a contained ActivityDefinition (a dict)
    or a canonical reference (a str such as "ActivityDefinition/<id>")."""
    contained = [d for d in definitions if isinstance(d, dict)]
    actions = [
        {"definitionCanonical": f"#{d['id']}" if isinstance(d, dict) else d} for d in definitions
    ]
    plan: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "status": "active",
        "name": "CommunityAcquiredPneumoniaAdult",
        "title": "Community Acquired Pneumonia Adult",
        "description": "Standard CAP management orders",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                    "code": "order-set",
                }
            ]
        },
        "contained": contained,
        "action": actions,
    }
    if url:
        plan["url"] = url
    return plan


def create_set(ward: Ward, plan: dict[str, Any], role: str = "CLINICIAN") -> dict[str, Any]:
    return ward.ok(
        ward.client.post("/fhir/R4/PlanDefinition", json=plan, headers=ward.headers(role)), 201
    )


def parameters(pid: str | None, eid: str | None = None) -> dict[str, Any]:
    params = []
    if pid:
        params.append({"name": "subject", "valueString": f"Patient/{pid}"})
    if eid:
        params.append({"name": "encounter", "valueString": f"Encounter/{eid}"})
    return {"resourceType": "Parameters", "parameter": params}


def apply(ward: Ward, plan_id: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return ward.client.post(
        f"/fhir/R4/PlanDefinition/{plan_id}/$apply", json=body, headers=headers or ward.doc
    )


def counts(ward: Ward, pid: str) -> dict[str, int]:
    return {rtype: ward.count(rtype, pid) for rtype in COUNTED}


def test_apply_stores_draft_orders_and_a_request_group_and_returns_the_care_plan(
    ward: Ward,
) -> None:
    pid = ward.patient()
    eid = ward.encounter(pid)
    warfarin = ward.order(ward.medication(pid, WARFARIN))
    ward.ok(ward.activate(warfarin))
    plan = create_set(ward, order_set(amoxicillin_definition(), cbc_definition()), role="ADMIN")

    care_plan = ward.ok(apply(ward, plan["id"], parameters(pid, eid)))

    assert validate_resource("CarePlan", care_plan) == care_plan
    assert care_plan["status"] == "draft"
    assert care_plan["intent"] == "order"
    assert care_plan["subject"] == {"reference": f"Patient/{pid}"}
    assert care_plan["encounter"] == {"reference": f"Encounter/{eid}"}
    assert care_plan["instantiatesCanonical"] == [PLAN_URL]
    assert "id" not in care_plan, "the CarePlan is returned, not stored"
    [activity] = care_plan["activity"]
    group = ward.ok(
        ward.client.get(f"/fhir/R4/{activity['reference']['reference']}", headers=ward.doc)
    )
    assert group["resourceType"] == "RequestGroup"
    assert (group["status"], group["intent"]) == ("draft", "order")
    assert group["subject"] == {"reference": f"Patient/{pid}"}
    assert group["encounter"] == {"reference": f"Encounter/{eid}"}
    assert group["instantiatesCanonical"] == [PLAN_URL]
    assert group["authoredOn"]
    identifier = {"system": ORDER_SET_INSTANCE, "value": group["id"]}
    assert group["groupIdentifier"] == identifier
    assert care_plan["identifier"] == [identifier]

    refs = [a["resource"]["reference"] for a in group["action"]]
    assert [r.split("/")[0] for r in refs] == ["MedicationRequest", "ServiceRequest"]
    amox, cbc = (ward.ok(ward.client.get(f"/fhir/R4/{ref}", headers=ward.doc)) for ref in refs)
    for order in (amox, cbc):
        assert (order["status"], order["intent"]) == ("draft", "order")
        assert order["subject"] == {"reference": f"Patient/{pid}"}
        assert order["encounter"] == {"reference": f"Encounter/{eid}"}
        assert order["instantiatesCanonical"] == [PLAN_URL]
        assert order["authoredOn"] == group["authoredOn"]
        assert order["priority"] == "routine"
    assert amox["medicationCodeableConcept"]["coding"][0]["code"] == AMOXICILLIN_500_CAP
    assert amox["dosageInstruction"] == amoxicillin_definition()["dosage"]
    assert amox["groupIdentifier"] == identifier
    assert cbc["code"]["coding"][0] == {"system": LOINC, "code": "58410-2", "display": "CBC"}
    assert cbc["category"] == [{"coding": [LAB]}]
    assert cbc["requisition"] == identifier

    alerts = ward.alerts(amox)
    assert "DDI-AMOX-WARFARIN" in rules(alerts), "order-select ran on the template"
    listed = {s["reference"] for s in care_plan["supportingInfo"]}
    assert {f"DetectedIssue/{a['id']}" for a in alerts} <= listed, "alerts are aggregated"
    assert amox["detectedIssue"] == [{"reference": f"DetectedIssue/{a['id']}"} for a in alerts]

    for res in (group, amox, cbc):
        prov = ward.ok(
            ward.client.get(
                f"/fhir/R4/Provenance?target={res['resourceType']}/{res['id']}", headers=ward.doc
            )
        )
        assert prov["total"] == 1, res["resourceType"]
        assert prov["entry"][0]["resource"]["reason"][0]["text"] == (
            f"order set PlanDefinition/{plan['id']} applied"
        )
    assert ward.activate(cbc).status_code == 200, "an applied draft activates like any order"


def test_a_hard_stop_on_any_template_stores_nothing_and_names_the_template(ward: Ward) -> None:
    pid = ward.patient()
    eid = ward.encounter(pid)
    ward.allergy(pid, AMOXICILLIN, criticality="high")
    stored_cbc = ward.ok(
        ward.client.post("/fhir/R4/ActivityDefinition", json=cbc_definition(), headers=ward.admin),
        201,
    )
    # The lab comes first, so it is created before the medication's hard-stop: all or nothing.
    plan = create_set(
        ward, order_set(f"ActivityDefinition/{stored_cbc['id']}", amoxicillin_definition())
    )
    before = counts(ward, pid)

    r = apply(ward, plan["id"], parameters(pid, eid))

    assert r.status_code == 422, r.json
    assert "CDS_HARD_STOP" in issue_codes(r.json)
    summary = r.json["issue"][0]["diagnostics"]
    assert "template 1 (Amoxicillin 500mg, 308191)" in summary
    assert "no order was created" in summary
    blocking = [i for i in r.json["issue"] if i.get("expression") == ["PlanDefinition.action[1]"]]
    assert blocking, r.json
    assert all("template 1" in i["diagnostics"] for i in blocking)
    assert any(AMOXICILLIN_500_CAP in i["diagnostics"] for i in blocking)
    assert any(i["severity"] == "error" for i in r.json["issue"] if "details" in i)
    assert counts(ward, pid) == before, "nothing of the set is stored"


def test_unknown_order_set_is_404(ward: Ward) -> None:
    pid = ward.patient()
    r = apply(ward, "ords-01JUNKNOWN", parameters(pid))
    assert r.status_code == 404, r.json
    assert issue_codes(r.json) == ["ORDER_SET_NOT_FOUND"]


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Parameters", "parameter": []},
        {"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": ""}]},
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueString": "Group/1"}],
        },
        {"resourceType": "Patient"},
        None,
    ],
)
def test_missing_or_wrong_subject_is_400(ward: Ward, body: Any) -> None:
    plan = create_set(ward, order_set(cbc_definition()))
    r = apply(ward, plan["id"], body)
    assert r.status_code == 400, r.json
    assert "VALIDATION_ERROR" in issue_codes(r.json)


def test_nurse_may_not_apply_and_nothing_is_stored(ward: Ward) -> None:
    pid = ward.patient()
    plan = create_set(ward, order_set(amoxicillin_definition(), cbc_definition()))
    before = counts(ward, pid)
    r = apply(ward, plan["id"], parameters(pid), headers=ward.nurse)
    assert r.status_code == 403, r.json
    assert issue_codes(r.json) == ["FORBIDDEN"]
    assert counts(ward, pid) == before
    prescriber = ward.headers("PRESCRIBER")
    assert apply(ward, plan["id"], parameters(pid), headers=prescriber).status_code == 200


def test_inactive_encounter_fails_the_whole_set(ward: Ward) -> None:
    pid = ward.patient()
    eid = ward.encounter(pid, status="finished")
    plan = create_set(ward, order_set(cbc_definition(), amoxicillin_definition()))
    before = counts(ward, pid)
    r = apply(ward, plan["id"], parameters(pid, eid))
    assert r.status_code == 422, r.json
    assert issue_codes(r.json) == ["ENCOUNTER_INACTIVE"]
    assert counts(ward, pid) == before


def test_a_set_the_server_cannot_apply_faithfully_is_refused(ward: Ward) -> None:
    pid = ward.patient()
    conditional = order_set(cbc_definition())
    conditional["action"][0]["condition"] = [
        {"kind": "applicability", "expression": {"language": "text/cql", "expression": "X"}}
    ]
    dangling = order_set("ActivityDefinition/act-missing")
    wrong_kind = order_set({**cbc_definition(), "kind": "Task"})
    for plan_body, where in (
        (conditional, "PlanDefinition.action[0].condition"),
        (dangling, "PlanDefinition.action[0].definitionCanonical"),
        (wrong_kind, "PlanDefinition.action[0].definitionCanonical"),
    ):
        plan = create_set(ward, plan_body)
        r = apply(ward, plan["id"], parameters(pid))
        assert r.status_code == 400, r.json
        assert [i["expression"] for i in r.json["issue"]] == [[where]], r.json
    assert ward.count("ServiceRequest", pid) == 0


def test_unadvertised_operations_on_plan_definition_stay_404(ward: Ward) -> None:
    plan = create_set(ward, order_set(cbc_definition()))
    for op in ("$everything", "$activate", "$data-requirements"):
        r = ward.client.post(
            f"/fhir/R4/PlanDefinition/{plan['id']}/{op}", json={}, headers=ward.doc
        )
        assert r.status_code == 404, (op, r.json)
    r = ward.client.post("/fhir/R4/ActivityDefinition/x/$apply", json={}, headers=ward.doc)
    assert r.status_code == 404, r.json
    r = ward.client.get(f"/fhir/R4/PlanDefinition/{plan['id']}/$apply", headers=ward.doc)
    assert r.status_code == 405, r.json


def test_the_service_returns_orders_and_aggregated_alerts(
    app: Flask, ward: Ward, tenant: str
) -> None:
    """The legacy `instantiate` calls OrderSetService directly: orderIds + cdsAlerts."""
    pid = ward.patient()
    eid = ward.encounter(pid)
    ward.ok(ward.activate(ward.order(ward.medication(pid, WARFARIN))))
    plan = create_set(ward, order_set(amoxicillin_definition(), cbc_definition()))
    clinician = Principal("dr-apply", tenant, frozenset({"CLINICIAN"}), frozenset({tenant}))
    with app.app_context():
        runtime = get_runtime()
        with UnitOfWork(runtime.database, clinician) as uow:
            result = OrderSetService(uow, runtime.cds).apply(
                plan["id"], patient_id=pid, encounter_id=eid, reason="CAP pathway"
            )
    assert [o.resource_type for o in result.orders] == ["MedicationRequest", "ServiceRequest"]
    assert result.request_group.content["action"][1]["resource"] == {
        "reference": result.orders[1].reference
    }
    assert "DDI-AMOX-WARFARIN" in rules(result.alerts)
    assert result.care_plan["activity"][0]["reference"]["reference"] == (
        result.request_group.reference
    )
    stored = ward.read({"resourceType": "RequestGroup", "id": result.request_group.id})
    assert stored["groupIdentifier"]["value"] == result.request_group.id
