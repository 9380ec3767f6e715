"""Walk the CapabilityStatement: everything it advertises works, nothing else does."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth import Principal
from app.fhir import capability
from app.runtime import get_runtime
from app.services.unit_of_work import UnitOfWork
from app.store.search.definitions import load_definitions
from app.store.search.extract import extract
from tests.conftest import TokenFactory
from tests.fhir_data import medication_request, patient, service_request
from tests.orders import task_for
from tests.subscriptions import subscription

ALL_INTERACTIONS = {
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
}


def _samples(pid: str, eid: str, sr_id: str) -> dict[str, dict[str, Any]]:
    pref = {"reference": f"Patient/{pid}"}
    return {
        "Patient": patient(identifier=[{"system": "urn:mrn", "value": "M1"}]),
        "Encounter": {
            "resourceType": "Encounter",
            "status": "in-progress",
            "subject": pref,
            "class": {"code": "IMP"},
            "period": {"start": "2026-01-01T00:00:00Z"},
        },
        "AllergyIntolerance": {
            "resourceType": "AllergyIntolerance",
            "patient": pref,
            "recordedDate": "2025-01-01",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/"
                        "allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980"}
                ]
            },
        },
        "ServiceRequest": service_request(
            pid,
            encounter={"reference": f"Encounter/{eid}"},
            priority="routine",
            requester={"reference": "Practitioner/dr-1"},
            performer=[{"reference": "Organization/lab"}],
            basedOn=[{"reference": f"ServiceRequest/{sr_id}"}],
            identifier=[{"system": "urn:placer", "value": "P1"}],
        ),
        "MedicationRequest": medication_request(
            pid,
            encounter={"reference": f"Encounter/{eid}"},
            priority="routine",
            requester={"reference": "Practitioner/dr-1"},
            identifier=[{"system": "urn:placer", "value": "M1"}],
        ),
        "NutritionOrder": {
            "resourceType": "NutritionOrder",
            "status": "draft",
            "intent": "order",
            "patient": pref,
            "encounter": {"reference": f"Encounter/{eid}"},
            "dateTime": "2026-01-01T10:00:00Z",
            "identifier": [{"system": "urn:placer", "value": "N1"}],
        },
        "Task": {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "focus": {"reference": f"ServiceRequest/{sr_id}"},
            "for": pref,
            "owner": {"reference": "Organization/lab"},
            "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
            "businessStatus": {"coding": [{"system": "urn:bs", "code": "pending"}]},
            "authoredOn": "2026-01-01T10:00:00Z",
            "identifier": [{"system": "urn:task", "value": "T1"}],
        },
        "PlanDefinition": {
            "resourceType": "PlanDefinition",
            "status": "active",
            "name": "CAPAdult",
            "title": "Community acquired pneumonia",
            "date": "2026-01-01",
            "identifier": [{"system": "urn:set", "value": "S1"}],
            "contained": [
                {
                    "resourceType": "ActivityDefinition",
                    "id": "t1",
                    "status": "active",
                    "kind": "ServiceRequest",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                }
            ],
            "action": [{"title": "CBC", "definitionCanonical": "#t1"}],
        },
        "ActivityDefinition": {
            "resourceType": "ActivityDefinition",
            "status": "active",
            "name": "CBC",
            "title": "Full blood count",
            "date": "2026-01-01",
            "identifier": [{"system": "urn:act", "value": "A1"}],
        },
        "Medication": {
            "resourceType": "Medication",
            "status": "active",
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "562251"}
                ]
            },
            "form": {"coding": [{"system": "http://snomed.info/sct", "code": "385055001"}]},
            "ingredient": [
                {
                    "itemCodeableConcept": {
                        "coding": [
                            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "723"}
                        ]
                    }
                }
            ],
        },
        "RequestGroup": {
            "resourceType": "RequestGroup",
            "status": "draft",
            "intent": "order",
            "subject": pref,
            "encounter": {"reference": f"Encounter/{eid}"},
            "authoredOn": "2026-01-01T10:00:00Z",
            "instantiatesCanonical": ["urn:set:S1"],
            "identifier": [{"system": "urn:rg", "value": "R1"}],
        },
        "Subscription": subscription("http://127.0.0.1:9/hook"),
    }


#: Parameters a type's one sample cannot carry (a FHIR choice: an order names its drug by
#: `medicationCodeableConcept` (`code`) or by `medicationReference` (`medication`), never both):
#: each is searched on a variant of the sample, stored as `world["<type>|<param>"]`.
VARIANTS: dict[tuple[str, str], Any] = {
    ("MedicationRequest", "medication"): lambda sample, world: {
        **{k: v for k, v in sample.items() if k not in ("id", "meta", "medicationCodeableConcept")},
        "medicationReference": {"reference": f"Medication/{world['Medication']['id']}"},
    },
}


#: Types a CLINICIAN may not read: the audit trail is an administrator's to read
#: (docs/operations.md), subscriptions are configuration (docs/events.md).
READER = {"AuditEvent": "ADMIN", "Subscription": "ADMIN"}
WRITER = {
    "Patient": "ADMIN",
    "Encounter": "ADMIN",
    "AllergyIntolerance": "ADMIN",
    "Task": "NURSE",
    "PlanDefinition": "ADMIN",
    "ActivityDefinition": "ADMIN",
    "Medication": "ADMIN",
    "Subscription": "ADMIN",
}


def _call(
    client: FlaskClient,
    interaction: str,
    base: str,
    res: dict[str, Any],
    reader: dict[str, str],
    writer: dict[str, str],
) -> Any:
    rid = res["id"]
    fresh = {k: v for k, v in res.items() if k not in ("id", "meta", "identifier")}
    if res["resourceType"] == "Subscription":  # masked headers have no value to keep
        fresh["channel"] = {k: v for k, v in res["channel"].items() if k != "header"}
    calls = {
        "read": ("GET", f"{base}/{rid}", None, reader),
        "vread": ("GET", f"{base}/{rid}/_history/1", None, reader),
        "history-instance": ("GET", f"{base}/{rid}/_history", None, reader),
        "history-type": ("GET", f"{base}/_history", None, reader),
        "search-type": ("GET", f"{base}?_id={rid}", None, reader),
        "update": ("PUT", f"{base}/{rid}", res, writer),
        "create": ("POST", base, fresh, writer),
        "delete": ("DELETE", f"{base}/{rid}", None, writer),
        "patch": ("PATCH", f"{base}/{rid}", [], writer),
    }
    method, url, body, hdrs = calls[interaction]
    return client.open(url, method=method, json=body, headers=hdrs)


def _index_values(definition: Any, resource: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """What the store indexes for a resource, by parameter name."""
    values = extract(definition, resource)
    by_param: dict[str, list[tuple[Any, ...]]] = {}
    for bucket in (values.tokens, values.references, values.dates, values.strings):
        for item in bucket:
            by_param.setdefault(item[0], []).append(item)
    if values.status:
        by_param.setdefault("status", []).append(("status", "", values.status))
    return by_param


def _value(ptype: str, item: tuple[Any, ...]) -> str:
    if ptype == "token":
        _p, system, code = item
        return f"{system}|{code}" if system else code
    if ptype == "reference":
        _p, rtype, rid = item
        return f"{rtype}/{rid}"
    if ptype == "date":
        return "ge" + item[1].date().isoformat()
    return item[2][:3]


@pytest.fixture
def world(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> dict[str, dict[str, Any]]:
    """One stored resource of every advertised type, created through the API where allowed."""
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    pid = client.post("/fhir/R4/Patient", json=patient(), headers=admin).json["id"]
    eid = client.post(
        "/fhir/R4/Encounter", json=_samples(pid, "x", "x")["Encounter"], headers=admin
    ).json["id"]
    sr_id = client.post("/fhir/R4/ServiceRequest", json=service_request(pid), headers=clin).json[
        "id"
    ]
    stored: dict[str, dict[str, Any]] = {}
    for rtype, body in _samples(pid, eid, sr_id).items():
        if rtype == "Task":  # created by activation only (issue 11, item 6)
            tid = task_for(client, headers("CLINICIAN"), body)
            stored[rtype] = client.get(f"/fhir/R4/Task/{tid}", headers=clin).json
            continue
        r = client.post(
            f"/fhir/R4/{rtype}", json=body, headers=headers(WRITER.get(rtype, "CLINICIAN"))
        )
        assert r.status_code == 201, (rtype, r.json)
        stored[rtype] = r.json
    for (rtype, param), variant in VARIANTS.items():
        body = variant(stored[rtype], stored)
        r = client.post(
            f"/fhir/R4/{rtype}", json=body, headers=headers(WRITER.get(rtype, "CLINICIAN"))
        )
        assert r.status_code == 201, (rtype, param, r.json)
        stored[f"{rtype}|{param}"] = r.json
    with app.app_context():
        system = Principal("test", tenant, frozenset({"ADMIN"}), frozenset({tenant}))
        with UnitOfWork(get_runtime().database, system) as uow:
            issue = uow.repo.create(
                "DetectedIssue",
                "cds-test-1",
                {
                    "resourceType": "DetectedIssue",
                    "status": "preliminary",
                    "patient": {"reference": f"Patient/{pid}"},
                    "code": {
                        "coding": [{"system": "urn:orders-service:cds-rule", "code": "DUP-ORDER"}]
                    },
                    "identifiedDateTime": "2026-01-01T10:00:00Z",
                    "implicated": [{"reference": f"ServiceRequest/{sr_id}"}],
                },
            )
            stored["DetectedIssue"] = issue.content
    prov = client.get(f"/fhir/R4/Provenance?patient={pid}&_count=1", headers=clin).json
    stored["Provenance"] = prov["entry"][0]["resource"]
    # The writes above were audited in their own transactions; an administrator reads them.
    audit = client.get(f"/fhir/R4/AuditEvent?patient={pid}&_count=1", headers=admin).json
    stored["AuditEvent"] = audit["entry"][0]["resource"]
    return stored


def test_every_advertised_type_interaction_and_search_parameter_answers(
    client: FlaskClient, headers: TokenFactory, world: dict[str, dict[str, Any]]
) -> None:
    cap = capability.load()
    assert set(cap.types) == {k.split("|")[0] for k in world}, "every advertised type is exercised"
    for rtype, tcap in cap.types.items():
        reader = headers(READER.get(rtype, "CLINICIAN"))
        res = world[rtype]
        rid = res["id"]
        base = f"/fhir/R4/{rtype}"
        writer = headers(WRITER.get(rtype, "CLINICIAN"))
        for interaction in ALL_INTERACTIONS:
            r = _call(client, interaction, base, res, reader, writer)
            if interaction in tcap.interactions:
                assert r.status_code in (200, 201), (rtype, interaction, r.status_code, r.json)
            else:
                assert r.status_code in (404, 405), (rtype, interaction, r.status_code)
                assert r.json["resourceType"] == "OperationOutcome"
        definition = load_definitions()[rtype]
        for name in tcap.search_params - {"_id", "_lastUpdated"}:
            sample = world.get(f"{rtype}|{name}", res)
            by_param = _index_values(
                definition, client.get(f"{base}/{sample['id']}", headers=reader).json
            )
            param = definition.params[name]
            items = by_param.get(name)
            if rtype in ("Provenance", "AuditEvent") and name == "patient":
                # Provenance.patient is the target's patient, set by the server, not in the JSON.
                items = [("patient", "Patient", world["Encounter"]["subject"]["reference"][8:])]
            assert items, f"sample {rtype} has no value for advertised parameter {name}"
            q = _value(param.type, items[0])
            r = client.get(
                f"{base}?{name}={q}&_id={sample['id']}",
                headers={**reader, "Prefer": "handling=strict"},
            )
            assert r.status_code == 200, (rtype, name, r.json)
            assert r.json["total"] == 1, (rtype, name, q, r.json)
        r = client.get(f"{base}?_lastUpdated=ge2000-01-01&_id={rid}", headers=reader)
        assert r.json["total"] == 1
        for inc in tcap.includes:
            r = client.get(f"{base}?_id={rid}&_include={inc}", headers=reader)
            assert r.status_code == 200, (inc, r.json)
        for rev in tcap.revincludes:
            r = client.get(f"{base}?_id={rid}&_revinclude={rev}", headers=reader)
            assert r.status_code == 200, (rev, r.json)


def test_indexed_parameters_are_exactly_the_advertised_ones() -> None:
    cap = capability.load()
    for rtype, definition in load_definitions().items():
        assert rtype in cap.types, f"{rtype} is indexed but not advertised"
        assert cap.types[rtype].search_params == set(definition.params) | {"_id", "_lastUpdated"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/fhir/R4/ServiceRequest?occurrence=2020", 400),  # a real FHIR parameter we do not index
        ("/fhir/R4/ServiceRequest?status:not=active", 400),  # an unsupported modifier
        ("/fhir/R4/ServiceRequest?_include=ServiceRequest:specimen", 400),
        ("/fhir/R4/ServiceRequest?_has:Task:focus:status=requested", 400),
        ("/fhir/R4/ServiceRequest/$everything", 404),
        ("/fhir/R4/Observation", 404),
        ("/fhir/R4/_history", 405),
        ("/fhir/R4", 405),
    ],
)
def test_unadvertised_features_are_refused(
    client: FlaskClient, headers: TokenFactory, path: str, status: int
) -> None:
    r = client.get(path, headers={**headers("CLINICIAN"), "Prefer": "handling=strict"})
    assert r.status_code == status, r.json
    assert r.json["resourceType"] == "OperationOutcome"


def test_every_advertised_operation_answers_and_its_definition_is_readable(
    client: FlaskClient, headers: TokenFactory
) -> None:
    cap = capability.load()
    doc = headers("CLINICIAN")
    pid = client.post("/fhir/R4/Patient", json=patient(), headers=headers("ADMIN")).json["id"]
    advertised = {
        op["definition"]
        for r in cap.statement["rest"][0]["resource"]
        for op in r.get("operation", [])
    }
    assert advertised, "the CapabilityStatement advertises the workflow operations"
    for url in advertised:
        op_id = url.rsplit("/", 1)[1]
        r = client.get(f"/fhir/R4/OperationDefinition/{op_id}")
        assert r.status_code == 200, r.json
        assert r.json["url"] == url
    for rtype, tcap in cap.types.items():
        for name in tcap.operations:
            if rtype == "Subscription":  # read-only operations of a stored subscription
                admin = headers("ADMIN")
                sub = client.post(
                    "/fhir/R4/Subscription",
                    json=subscription("http://127.0.0.1:9/hook"),
                    headers=admin,
                ).json
                r = client.get(f"/fhir/R4/Subscription/{sub['id']}/${name}", headers=admin)
                assert r.status_code == 200, (rtype, name, r.json)
                continue
            if rtype == "PlanDefinition":  # $apply of an unknown set: routed, 404 ORDER_SET_...
                subject = {"name": "subject", "valueString": f"Patient/{pid}"}
                r = client.post(
                    f"/fhir/R4/PlanDefinition/ords-unknown/${name}",
                    json={"resourceType": "Parameters", "parameter": [subject]},
                    headers=doc,
                )
                assert r.status_code == 404, (rtype, name, r.json)
                codes = [c["code"] for i in r.json["issue"] for c in i["details"]["coding"]]
                assert codes == ["ORDER_SET_NOT_FOUND"], (rtype, name, r.json)
                continue
            body = {
                "ServiceRequest": service_request(pid, code={"coding": [{"code": f"op-{name}"}]}),
                "MedicationRequest": medication_request(pid),
                "NutritionOrder": {
                    "resourceType": "NutritionOrder",
                    "status": "draft",
                    "intent": "order",
                    "patient": {"reference": f"Patient/{pid}"},
                    "dateTime": "2026-01-01T10:00:00Z",
                },
            }[rtype]
            order = client.post(f"/fhir/R4/{rtype}", json=body, headers=doc).json
            params = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "alert", "valueString": "cds-unknown"},
                    {"name": "reason", "valueString": "walk"},
                ],
            }
            r = client.post(
                f"/fhir/R4/{rtype}/{order['id']}/${name}",
                json=params,
                headers={**doc, "If-Match": 'W/"1"'},
            )
            codes = [
                c["code"]
                for i in r.json.get("issue", [])
                for c in i.get("details", {}).get("coding", [])
            ]
            assert r.status_code in (200, 404, 422), (rtype, name, r.json)
            assert "NOT_FOUND" not in codes, (rtype, name, "the operation must be routed")
        for name in {"hold", "cancel", "apply", "everything"} - tcap.operations:
            r = client.post(f"/fhir/R4/{rtype}/x/${name}", json={}, headers=doc)
            assert r.status_code == 404, (rtype, name)
