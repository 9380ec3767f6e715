"""The access audit trail (issue 15 item 3): every read or write of patient data, on every
face, is a FHIR AuditEvent (IHE BALP shapes) an administrator can search by patient, date
and agent; a patient sees only the events about themselves; nobody writes them.

Both backends (the `app` fixture). Reads are buffered and flushed off the request path; an
AuditEvent search flushes this process's buffer first, so these tests need no sleeping,
except the one that proves the background flush itself.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.runtime import get_runtime
from app.store import Repository
from app.store.search.query import parse_search
from tests.conftest import TokenFactory
from tests.legacy_data import LegacyApi, fhir_id, lab

AUDIT = "/fhir/R4/AuditEvent"
INTERACTION = "http://hl7.org/fhir/restful-interaction"


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


def events(client: FlaskClient, who: dict[str, str], query: str) -> list[dict[str, Any]]:
    r = client.get(f"{AUDIT}?{query}&_count=100", headers=who)
    assert r.status_code == 200, r.get_json()
    return [e["resource"] for e in r.get_json().get("entry", [])]


def subtypes(event: dict[str, Any]) -> set[str]:
    return {c["code"] for c in event["subtype"]}


def entity_refs(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event["entity"] if "reference" in e.get("what", {})}


def user_of(event: dict[str, Any]) -> str:
    return next(a for a in event["agent"] if a["requestor"])["who"]["identifier"]["value"]


def test_a_clinicians_read_of_a_patients_order_is_findable_by_patient_and_by_agent(
    client: FlaskClient, api: LegacyApi
) -> None:
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid))
    other_pid, other_eid = api.admitted()
    api.created(lab(other_pid, other_eid))
    clinician_x = api.as_role("CLINICIAN", sub="dr-x")
    r = client.get(f"/api/v1/orders/{order['orderId']}", headers=clinician_x)
    assert r.status_code == 200
    admin = api.admin

    by_patient = events(client, admin, f"patient={fhir_id(pid)}&subtype=read")
    reads = [e for e in by_patient if user_of(e) == "dr-x"]
    assert len(reads) == 1, by_patient
    read = reads[0]
    assert read["action"] == "R" and read["outcome"] == "0"
    assert "api-v1:orders.get" in subtypes(read)
    assert {
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        }
    }.items() <= read.items()
    assert f"Patient/{fhir_id(pid)}" in entity_refs(read)
    order_ref = next(r for r in entity_refs(read) if r.startswith("ServiceRequest/"))
    assert order_ref.startswith(f"ServiceRequest/{fhir_id(order['orderId'])}/_history/")
    user = next(a for a in read["agent"] if a["requestor"])
    assert [c["coding"][0]["code"] for c in user["role"]] == ["CLINICIAN"]
    assert read["source"]["site"] == api.admin["X-Tenant-ID"]

    by_agent = events(client, admin, "agent=dr-x")
    assert [e["id"] for e in by_agent] == [read["id"]], "dr-x did exactly one thing"
    today = read["recorded"][:10]
    assert events(client, admin, f"agent=dr-x&patient={fhir_id(pid)}&date={today}")
    assert not events(client, admin, f"agent=dr-x&patient={fhir_id(other_pid)}")
    assert not events(client, admin, "agent=dr-x&date=lt2000-01-01")


def test_writes_are_audited_in_their_own_transaction_on_the_fhir_face(
    client: FlaskClient, api: LegacyApi
) -> None:
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid))
    creates = events(client, api.admin, f"patient={fhir_id(pid)}&action=C")
    made = [e for e in creates if "api-v1:orders.create" in subtypes(e)]
    assert len(made) == 1
    assert any(
        r.startswith(f"ServiceRequest/{fhir_id(order['orderId'])}/_history/1")
        for r in entity_refs(made[0])
    )
    # A refused write (terminal state) leaves a failed attempt, not a success.
    assert api.change(order["orderId"], "cancel", order["version"]).status_code == 200
    refused = api.activate(order["orderId"], version=2)
    assert refused.status_code == 409
    failed = events(client, api.admin, f"patient={fhir_id(pid)}&outcome=4")
    assert [e["outcomeDesc"] for e in failed] == ["ORDER_TERMINAL_STATE"]


def test_a_fhir_search_records_the_query_per_patient(
    client: FlaskClient, headers: TokenFactory, api: LegacyApi
) -> None:
    a, ea = api.admitted()
    b, eb = api.admitted()
    api.created(lab(a, ea))
    api.created(lab(b, eb))
    nurse = headers("NURSE", sub="nurse-n")
    r = client.get(f"/fhir/R4/ServiceRequest?patient={fhir_id(a)},{fhir_id(b)}", headers=nurse)
    assert r.get_json()["total"] == 2
    found = events(client, api.admin, "agent=nurse-n")
    assert sorted(e["entity"][0]["what"]["reference"] for e in found) == sorted(
        [f"Patient/{fhir_id(a)}", f"Patient/{fhir_id(b)}"]
    ), "one event per patient (BALP)"
    for event in found:
        assert event["action"] == "E" and "search-type" in subtypes(event)
        query = next(e for e in event["entity"] if e["role"]["code"] == "24")
        assert base64.b64decode(query["query"]).decode() == (f"patient={fhir_id(a)},{fhir_id(b)}")
        assert len(entity_refs(event)) == 1, "the patient only: results are not recorded"


def test_cds_hooks_calls_are_audited(
    client: FlaskClient, headers: TokenFactory, api: LegacyApi
) -> None:
    pid, eid = api.admitted()
    api.created(lab(pid, eid))
    doc = headers("CLINICIAN", sub="dr-cds")
    call = {
        "hook": "order-select",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/1",
            "patientId": fhir_id(pid),
            "selections": ["ServiceRequest/new-1"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "id": "new-1",
                            "status": "draft",
                            "intent": "order",
                            "subject": {"reference": f"Patient/{fhir_id(pid)}"},
                            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
                        }
                    }
                ],
            },
        },
    }
    r = client.post("/cds-services/order-select-checks", json=call, headers=doc)
    assert r.status_code == 200, r.get_json()
    found = events(client, api.admin, f"agent=dr-cds&patient={fhir_id(pid)}")
    assert len(found) == 1
    assert "cds-hooks:order-select-checks" in subtypes(found[0])


def test_a_patient_sees_only_their_own_events_and_staff_see_none(
    client: FlaskClient, api: LegacyApi
) -> None:
    pid, eid = api.admitted()
    other, other_eid = api.admitted()
    api.created(lab(pid, eid))
    api.created(lab(other, other_eid))
    mine = events(client, api.as_patient(pid), "_count=100")
    assert mine and {e["entity"][0]["what"]["reference"] for e in mine} == {
        f"Patient/{fhir_id(pid)}"
    }
    assert not events(client, api.as_patient(pid), f"patient={fhir_id(other)}")
    theirs = events(client, api.admin, f"patient={fhir_id(other)}")
    r = client.get(f"{AUDIT}/{theirs[0]['id']}", headers=api.as_patient(pid))
    assert r.status_code == 404
    for role in ("CLINICIAN", "NURSE"):
        r = client.get(AUDIT, headers=api.as_role(role))
        assert r.status_code == 403, role


def test_nobody_writes_audit_events(client: FlaskClient, api: LegacyApi) -> None:
    pid, eid = api.admitted()
    api.created(lab(pid, eid))
    existing = events(client, api.admin, f"patient={fhir_id(pid)}")[0]
    body = {k: v for k, v in existing.items() if k not in ("id", "meta")}
    fhir_headers = {**api.admin, "Content-Type": "application/fhir+json"}
    assert client.post(AUDIT, json=body, headers=fhir_headers).status_code == 405
    r = client.put(f"{AUDIT}/{existing['id']}", json=existing, headers=fhir_headers)
    assert r.status_code == 405


def test_buffered_reads_reach_the_database_without_a_search(
    app: Flask, client: FlaskClient, api: LegacyApi
) -> None:
    """The flusher thread writes within its interval: no AuditEvent search forces it."""
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid))
    r = client.get(f"/api/v1/orders/{order['orderId']}", headers=api.as_role("NURSE", sub="n-2"))
    assert r.status_code == 200
    with app.app_context():
        trail = get_runtime().audit
    assert trail is not None
    deadline = time.monotonic() + 10 * trail.flush_seconds
    while trail.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trail.pending() == 0
    # Read it back without the search's own flush: straight from the store.
    with app.app_context():
        database = get_runtime().database
    with database.connect() as conn:
        repo = Repository(conn, api.admin["X-Tenant-ID"])
        page = repo.search(parse_search("AuditEvent", [("agent", "n-2")]))
    assert [e.content["action"] for e in page.resources] == ["R"]


def test_a_legacy_list_is_one_query_event_naming_the_query_not_the_results(
    client: FlaskClient, api: LegacyApi
) -> None:
    """BALP Query / PatientQuery: the query and the patient; the results are not recorded."""
    pid, eid = api.admitted()
    api.created(lab(pid, eid))
    api.created(lab(pid, eid, orderCode={"system": "http://loinc.org", "code": "718-7"}))
    r = client.get(f"/api/v1/orders?patientId={pid}", headers=api.as_role("NURSE", sub="n-list"))
    assert r.get_json()["total"] == 2
    (event,) = events(client, api.admin, "agent=n-list")
    assert event["action"] == "E"
    assert {"search-type", "api-v1:orders.list"} <= subtypes(event)
    assert entity_refs(event) == {f"Patient/{fhir_id(pid)}"}
    query = next(e for e in event["entity"] if e["role"]["code"] == "24")
    assert base64.b64decode(query["query"]).decode() == f"patientId={pid}"


def test_a_list_without_a_query_string_names_the_orders_it_returned(
    client: FlaskClient, api: LegacyApi
) -> None:
    """With nothing asked to record, the event names what was read instead (up to
    `MAX_ENTITIES` per patient): no search event says nothing about what it touched."""
    pid, eid = api.admitted()
    first = api.created(lab(pid, eid))
    second = api.created(lab(pid, eid, orderCode={"system": "http://loinc.org", "code": "718-7"}))
    r = client.get("/api/v1/orders", headers=api.as_role("ADMIN", sub="a-list"))
    assert r.status_code == 200
    found = [
        e
        for e in events(client, api.admin, "agent=a-list")
        if f"Patient/{fhir_id(pid)}" in entity_refs(e)
    ]
    (event,) = found
    assert event["action"] == "E"
    assert not [e for e in event["entity"] if e.get("role", {}).get("code") == "24"]
    refs = {ref.split("/_history")[0] for ref in entity_refs(event)}
    assert {f"ServiceRequest/{fhir_id(o['orderId'])}" for o in (first, second)} <= refs


def test_audit_events_page_by_date_with_totals_and_stay_immutable(
    client: FlaskClient, api: LegacyApi
) -> None:
    """The trail's own table pages like any search: `_count`, `total`, `_sort`, next links
    that walk every event once; and no interaction changes an event (405)."""
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid))
    nurse = api.as_role("NURSE", sub="n-paging")
    for _ in range(3):
        assert client.get(f"/api/v1/orders/{order['orderId']}", headers=nurse).status_code == 200
    url = f"{AUDIT}?agent=n-paging&_sort=-date&_count=2"
    seen: list[dict[str, Any]] = []
    while url:
        r = client.get(url, headers=api.admin)
        assert r.status_code == 200, r.get_json()
        bundle = r.get_json()
        assert bundle["total"] == 3
        seen += [e["resource"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
        url = url.split("/fhir/R4", 1)[-1] and f"/fhir/R4{url.split('/fhir/R4', 1)[-1]}"
    assert len({e["id"] for e in seen}) == 3
    recorded = [e["recorded"] for e in seen]
    assert recorded == sorted(recorded, reverse=True)
    r = client.get(f"{AUDIT}?agent=n-paging&_summary=count", headers=api.admin)
    assert r.get_json()["total"] == 3
    one = seen[0]
    assert client.get(f"{AUDIT}/{one['id']}", headers=api.admin).get_json() == one
    fhir_headers = {**api.admin, "Content-Type": "application/fhir+json"}
    assert client.delete(f"{AUDIT}/{one['id']}", headers=fhir_headers).status_code == 405
    assert client.patch(f"{AUDIT}/{one['id']}", json=[], headers=fhir_headers).status_code == 405
    assert client.get(f"{AUDIT}/{one['id']}", headers=api.admin).status_code == 200
