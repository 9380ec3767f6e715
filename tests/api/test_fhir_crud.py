"""FHIR REST instance and type interactions through `/fhir/R4` (issue 2, DESIGN §3-§5, §8).

create / read / vread / update (PUT, update-as-create, If-Match) / conditional create /
instance history / no delete or patch / validation / negotiation / Prefer / Provenance.
Every error case also checks that nothing was written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import TokenFactory
from tests.fhir_data import (
    allergy_intolerance,
    encounter,
    medication_request,
    nutrition_order,
    patient,
    plan_definition,
    service_request,
)

BASE = "/fhir/R4"
SERVER_ID = re.compile(r"^[a-z]+-[0-9A-Z]{26}$")
MRN = "urn:oid:1.2.36.146.595.217.0.1"


# ---------------------------------------------------------------------------- helpers
def code_of(resp: TestResponse) -> str:
    """The error code carried in issue[0].details.coding[0].code."""
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]["details"]["coding"][0]["code"]


def total(client: FlaskClient, h: dict[str, str], rtype: str, query: str = "") -> int:
    r = client.get(f"{BASE}/{rtype}?_summary=count{'&' + query if query else ''}", headers=h)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["total"]


def store_counts(client: FlaskClient, h: dict[str, str], *types: str) -> dict[str, int]:
    return {t: total(client, h, t) for t in (*types, "Provenance")}


def post(client: FlaskClient, h: dict[str, str], body: dict[str, Any], **kw: Any) -> TestResponse:
    return client.post(f"{BASE}/{body['resourceType']}", json=body, headers=h, **kw)


def create(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = post(client, h, body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def with_headers(h: dict[str, str], **extra: str) -> dict[str, str]:
    return {**h, **extra}


@pytest.fixture
def staff(headers: TokenFactory) -> dict[str, str]:
    """A token that may write every REST-writable type (ADMIN + CLINICIAN)."""
    return headers("ADMIN", "CLINICIAN")


@pytest.fixture
def pid(client: FlaskClient, staff: dict[str, str]) -> str:
    return create(client, staff, patient())["id"]


# ---------------------------------------------------------------------------- create / read
Builder = Callable[[str], dict[str, Any]]
CREATABLE: list[tuple[str, Builder, str]] = [
    ("Patient", lambda p: patient(), "pat-"),
    ("ServiceRequest", service_request, "ord-"),
    ("MedicationRequest", medication_request, "ord-"),
    ("NutritionOrder", nutrition_order, "ord-"),
    ("Encounter", encounter, ""),
    ("AllergyIntolerance", allergy_intolerance, ""),
    ("PlanDefinition", lambda p: plan_definition(), "ords-"),
]


@pytest.mark.parametrize(("rtype", "build", "prefix"), CREATABLE, ids=[c[0] for c in CREATABLE])
def test_create_answers_201_with_server_id_location_etag_and_meta(
    client: FlaskClient, staff: dict[str, str], pid: str, rtype: str, build: Builder, prefix: str
) -> None:
    r = post(client, staff, build(pid))
    assert r.status_code == 201, r.get_json()
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    body = r.get_json()
    rid = body["id"]
    assert body["resourceType"] == rtype
    assert SERVER_ID.match(rid), rid
    assert rid.startswith(prefix)
    assert r.headers["Location"].endswith(f"{BASE}/{rtype}/{rid}/_history/1")
    assert r.headers["ETag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    modified = parsedate_to_datetime(r.headers["Last-Modified"])
    stamped = body["meta"]["lastUpdated"]
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == stamped[:19]

    got = client.get(f"{BASE}/{rtype}/{rid}", headers=staff)
    assert got.status_code == 200
    assert got.get_json() == body
    assert got.headers["ETag"] == 'W/"1"'
    assert "Last-Modified" in got.headers


def test_server_ignores_client_meta_version_and_id_on_create(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    body = patient("client-picked", meta={"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"})
    created = create(client, staff, body)
    assert created["id"] != "client-picked"
    assert SERVER_ID.match(created["id"])
    assert created["meta"]["versionId"] == "1"
    assert not created["meta"]["lastUpdated"].startswith("2001")
    assert client.get(f"{BASE}/Patient/client-picked", headers=staff).status_code == 404


def test_read_of_unknown_id_is_404_operation_outcome(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    r = client.get(f"{BASE}/ServiceRequest/ord-01J00000000000000000000000", headers=staff)
    assert r.status_code == 404
    assert r.get_json()["issue"][0]["code"] == "not-found"


def test_vread_returns_each_version_after_an_update(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    v1 = create(client, staff, patient(name=[{"family": "Before"}]))
    pid = v1["id"]
    r = client.put(
        f"{BASE}/Patient/{pid}",
        json=patient(pid, name=[{"family": "After"}]),
        headers=with_headers(staff, **{"If-Match": 'W/"1"'}),
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["meta"]["versionId"] == "2"
    assert r.headers["ETag"] == 'W/"2"'

    old = client.get(f"{BASE}/Patient/{pid}/_history/1", headers=staff)
    assert old.status_code == 200
    assert old.get_json()["name"] == [{"family": "Before"}]
    assert old.get_json()["meta"]["versionId"] == "1"
    assert old.headers["ETag"] == 'W/"1"'
    new = client.get(f"{BASE}/Patient/{pid}/_history/2", headers=staff)
    assert new.get_json()["name"] == [{"family": "After"}]
    current = client.get(f"{BASE}/Patient/{pid}", headers=staff).get_json()
    assert current == new.get_json()
    for missing in ("3", "0", "x"):
        r = client.get(f"{BASE}/Patient/{pid}/_history/{missing}", headers=staff)
        assert r.status_code == 404, missing
        assert r.get_json()["resourceType"] == "OperationOutcome"


def test_reads_pass_the_stored_document_through_unchanged(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    """GET by id and search pages send the stored JSON text without re-serialising it: what
    comes back must be exactly the document the write answered with — escapes, non-ASCII,
    numbers and nesting included — and `_elements` still works on it."""
    tricky = 'quote " backslash \\ slash / tab \t newline \n \u2028 é 漢字 🙂 {"not": "json"}'
    body = service_request(
        pid,
        note=[{"text": tricky}],
        quantityQuantity={"value": 1.5, "unit": "mL"},
        extension=[{"url": "urn:test:int", "valueInteger": 2147483647}],
    )
    written = create(client, staff, body)
    got = client.get(f"{BASE}/ServiceRequest/{written['id']}", headers=staff)
    assert got.status_code == 200
    assert orjson.loads(got.data) == written
    assert got.get_json()["note"][0]["text"] == tricky
    page = client.get(f"{BASE}/ServiceRequest?_id={written['id']}", headers=staff).get_json()
    assert [e["resource"] for e in page["entry"]] == [written]
    subset = client.get(
        f"{BASE}/ServiceRequest/{written['id']}?_elements=note", headers=staff
    ).get_json()
    assert subset["note"] == written["note"] and "quantityQuantity" not in subset
    assert any(t.get("code") == "SUBSETTED" for t in subset["meta"]["tag"])


# ---------------------------------------------------------------------------- update
def test_put_with_a_client_id_creates_then_updates(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    url = f"{BASE}/Patient/upstream-mrn-42"
    first = client.put(url, json=patient("upstream-mrn-42"), headers=staff)
    assert first.status_code == 201, first.get_json()
    assert first.headers["Location"].endswith("/Patient/upstream-mrn-42/_history/1")
    assert first.headers["ETag"] == 'W/"1"'
    assert first.get_json()["meta"]["versionId"] == "1"

    second = client.put(url, json=patient("upstream-mrn-42", gender="female"), headers=staff)
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["meta"]["versionId"] == "2"
    assert second.headers["ETag"] == 'W/"2"'
    read = client.get(url, headers=staff).get_json()
    assert read["gender"] == "female"
    assert read["meta"]["versionId"] == "2"
    assert total(client, staff, "Patient") == 1


def test_put_of_an_order_with_a_client_id_creates_a_draft_then_edits_it(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    """An upstream system files its order under its own id: the first PUT creates the draft
    (201, decision support run as on POST), the next edits it (200)."""
    today = {"authoredOn": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    create(client, staff, service_request(pid, **today))  # an open CBC: the new one repeats it
    url = f"{BASE}/ServiceRequest/lab-upstream-7"
    first = client.put(url, json=service_request(pid, id="lab-upstream-7", **today), headers=staff)
    assert first.status_code == 201, first.get_json()
    assert first.headers["Location"].endswith("/ServiceRequest/lab-upstream-7/_history/1")
    assert first.get_json()["status"] == "draft"
    alerts = client.get(
        f"{BASE}/DetectedIssue?implicated=ServiceRequest/lab-upstream-7", headers=staff
    ).get_json()
    assert alerts["total"] == 1, "the duplicate CBC was checked on the PUT that created it"

    edit = service_request(pid, id="lab-upstream-7", priority="urgent", **today)
    second = client.put(url, json=edit, headers=with_headers(staff, **{"If-Match": 'W/"1"'}))
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["priority"] == "urgent"
    assert second.headers["ETag"] == 'W/"2"'


@pytest.mark.parametrize("body_id", ["someone-else", None], ids=["different-id", "no-id-in-body"])
def test_put_whose_body_id_differs_from_the_url_is_400_and_writes_nothing(
    client: FlaskClient, staff: dict[str, str], body_id: str | None
) -> None:
    r = client.put(f"{BASE}/Patient/url-id", json=patient(body_id), headers=staff)
    assert r.status_code == 400
    assert code_of(r) == "VALIDATION_ERROR"
    assert client.get(f"{BASE}/Patient/url-id", headers=staff).status_code == 404
    if body_id:
        assert client.get(f"{BASE}/Patient/{body_id}", headers=staff).status_code == 404
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


def test_if_match_current_version_updates_and_stale_version_is_412_writing_nothing(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    sr = create(client, staff, service_request(pid))
    url = f"{BASE}/ServiceRequest/{sr['id']}"
    # a draft may be edited; activation is $activate, so the edit here is the priority
    ok = client.put(
        url,
        json={**sr, "priority": "stat"},
        headers=with_headers(staff, **{"If-Match": 'W/"1"'}),
    )
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["meta"]["versionId"] == "2"
    assert ok.get_json()["priority"] == "stat"
    before = store_counts(client, staff, "ServiceRequest")

    # a stale edit (someone else changed the draft meanwhile) and a stale status change
    for change in ({"priority": "asap"}, {"status": "revoked"}):
        stale = client.put(
            url,
            json={**sr, **change},
            headers=with_headers(staff, **{"If-Match": 'W/"1"'}),
        )
        assert stale.status_code == 412, change
        assert code_of(stale) == "OPTIMISTIC_LOCK_CONFLICT"
    current = client.get(url, headers=staff)
    assert current.get_json()["status"] == "draft"
    assert current.get_json()["priority"] == "stat"
    assert current.get_json()["meta"]["versionId"] == "2"
    history = client.get(f"{url}/_history", headers=staff).get_json()
    assert history["total"] == 2
    assert len(history["entry"]) == 2
    assert store_counts(client, staff, "ServiceRequest") == before


@pytest.mark.parametrize("etag", ['W/"1"', '"1"', 'W/"99"'])
def test_if_match_on_a_nonexistent_id_is_a_conflict_and_creates_nothing(
    client: FlaskClient, staff: dict[str, str], pid: str, etag: str
) -> None:
    r = client.put(
        f"{BASE}/ServiceRequest/never-was",
        json=service_request(pid, id="never-was"),
        headers=with_headers(staff, **{"If-Match": etag}),
    )
    assert r.status_code in (409, 412), r.get_json()
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert client.get(f"{BASE}/ServiceRequest/never-was", headers=staff).status_code == 404
    assert store_counts(client, staff, "ServiceRequest") == {"ServiceRequest": 0, "Provenance": 1}


def test_malformed_if_match_is_400_and_writes_nothing(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    sr = create(client, staff, service_request(pid))
    # a change that is allowed with a well-formed If-Match (cancelling the draft)
    r = client.put(
        f"{BASE}/ServiceRequest/{sr['id']}",
        json={**sr, "status": "revoked"},
        headers=with_headers(staff, **{"If-Match": "yesterday"}),
    )
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["If-Match"]
    got = client.get(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff).get_json()
    assert got["meta"]["versionId"] == "1"
    assert got["status"] == "draft"


# ---------------------------------------------------------------------------- conditional create
def test_conditional_create_creates_once_then_returns_the_match(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    cond = with_headers(staff, **{"If-None-Exist": f"identifier={MRN}|12345"})
    body = patient(identifier=[{"system": MRN, "value": "12345"}])
    first = post(client, cond, body)
    assert first.status_code == 201, first.get_json()
    pid = first.get_json()["id"]
    assert SERVER_ID.match(pid)
    second = post(client, cond, body)
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["id"] == pid
    assert second.get_json()["meta"]["versionId"] == "1"
    assert store_counts(client, staff, "Patient") == {"Patient": 1, "Provenance": 1}


def test_conditional_create_with_two_matches_is_412_and_creates_nothing(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    ident = [{"system": MRN, "value": "dup"}]
    create(client, staff, patient(identifier=ident))
    create(client, staff, patient(identifier=ident))
    before = store_counts(client, staff, "Patient")
    r = post(
        client,
        with_headers(staff, **{"If-None-Exist": f"identifier={MRN}|dup"}),
        patient(identifier=ident),
    )
    assert r.status_code == 412
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert store_counts(client, staff, "Patient") == before


def test_conditional_create_of_an_invalid_resource_is_400_even_without_a_match(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    r = post(
        client,
        with_headers(staff, **{"If-None-Exist": f"identifier={MRN}|x"}),
        patient(identifier=[{"system": MRN, "value": "x"}], birthDate="1970-02-30"),
    )
    assert r.status_code == 400
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


# ---------------------------------------------------------------------------- history
def test_instance_history_lists_versions_newest_first_with_total(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient(gender="female"))["id"]
    for version, gender in ((1, "male"), (2, "other")):
        r = client.put(
            f"{BASE}/Patient/{pid}",
            json=patient(pid, gender=gender),
            headers=with_headers(staff, **{"If-Match": f'W/"{version}"'}),
        )
        assert r.status_code == 200, r.get_json()
    r = client.get(f"{BASE}/Patient/{pid}/_history", headers=staff)
    assert r.status_code == 200
    bundle = r.get_json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    versions = [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
    assert versions == ["3", "2", "1"]
    assert [e["resource"]["gender"] for e in bundle["entry"]] == ["other", "male", "female"]
    assert any(link["relation"] == "self" for link in bundle["link"])

    missing = client.get(f"{BASE}/Patient/nobody/_history", headers=staff)
    assert missing.status_code == 404


# ---------------------------------------------------------------------------- no delete / patch
def test_delete_is_405_advising_entered_in_error_and_deletes_nothing(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    sr = create(client, staff, service_request(pid))
    r = client.delete(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff)
    assert r.status_code == 405
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "entered-in-error" in orjson.dumps(body).decode()
    still = client.get(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff)
    assert still.status_code == 200
    assert still.get_json()["meta"]["versionId"] == "1"


def test_patch_is_405_and_changes_nothing(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    sr = create(client, staff, service_request(pid))
    r = client.patch(
        f"{BASE}/ServiceRequest/{sr['id']}",
        data=b'[{"op":"replace","path":"/status","value":"active"}]',
        headers=with_headers(staff, **{"Content-Type": "application/json-patch+json"}),
    )
    assert r.status_code == 405
    assert r.get_json()["resourceType"] == "OperationOutcome"
    got = client.get(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff).get_json()
    assert got["status"] == "draft"
    assert got["meta"]["versionId"] == "1"


# ---------------------------------------------------------------------------- validation
Mutator = Callable[[str], dict[str, Any]]


def _sr(pid: str, drop: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    body = service_request(pid, **extra)
    for key in drop:
        body.pop(key)
    return body


INVALID: list[tuple[str, str, Mutator, set[str]]] = [
    ("bad-status-code", "ServiceRequest", lambda p: _sr(p, status="bogus"), {"ServiceRequest.status"}),
    ("bad-intent-code", "ServiceRequest", lambda p: _sr(p, intent="wish"), {"ServiceRequest.intent"}),
    ("bad-priority-code", "ServiceRequest", lambda p: _sr(p, priority="whenever"), {"ServiceRequest.priority"}),
    ("bad-gender-code", "Patient", lambda p: patient(gender="robot"), {"Patient.gender"}),
    ("missing-status-and-intent", "ServiceRequest", lambda p: _sr(p, drop=("status", "intent")),
     {"ServiceRequest.status", "ServiceRequest.intent"}),
    ("missing-subject", "ServiceRequest", lambda p: _sr(p, drop=("subject",)), {"ServiceRequest.subject"}),
    ("string-for-list", "ServiceRequest", lambda p: _sr(p, category="lab"), {"ServiceRequest.category"}),
    ("string-for-reference", "ServiceRequest", lambda p: _sr(p, subject=f"Patient/{p}"), {"ServiceRequest.subject"}),
    ("number-for-string", "ServiceRequest", lambda p: _sr(p, note=[{"text": 5}]), {"ServiceRequest.note[0].text"}),
    ("string-for-boolean", "ServiceRequest", lambda p: _sr(p, doNotPerform="maybe"), {"ServiceRequest.doNotPerform"}),
    ("yes-for-boolean", "Patient", lambda p: patient(active="yes"), {"Patient.active"}),
    ("number-for-dateTime", "ServiceRequest", lambda p: _sr(p, authoredOn=12), {"ServiceRequest.authoredOn"}),
    ("number-for-date", "Patient", lambda p: patient(birthDate=19700101), {"Patient.birthDate"}),
    ("unknown-element", "ServiceRequest", lambda p: _sr(p, colour="blue"), {"ServiceRequest.colour"}),
    ("bad-dateTime", "ServiceRequest", lambda p: _sr(p, authoredOn="2026-13-45"), {"ServiceRequest.authoredOn"}),
    ("impossible-date", "Patient", lambda p: patient(birthDate="1970-02-30"), {"Patient.birthDate"}),
    ("wrong-resourceType", "ServiceRequest", lambda p: {**_sr(p), "resourceType": "Patient"},
     {"ServiceRequest.resourceType"}),
    ("several-problems", "ServiceRequest", lambda p: _sr(p, status="bogus", authoredOn="nope", colour="x"),
     {"ServiceRequest.status", "ServiceRequest.authoredOn", "ServiceRequest.colour"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rtype", "build", "paths"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_resource_is_400_with_a_path_per_problem_and_nothing_stored(
    client: FlaskClient,
    staff: dict[str, str],
    pid: str,
    rtype: str,
    build: Mutator,
    paths: set[str],
) -> None:
    before = store_counts(client, staff, "Patient", "ServiceRequest")
    r = client.post(f"{BASE}/{rtype}", json=build(pid), headers=staff)
    assert r.status_code == 400, r.get_json()
    assert code_of(r) == "VALIDATION_ERROR"
    issues = r.get_json()["issue"]
    assert all(i["severity"] in ("error", "fatal") for i in issues)
    assert all(i.get("expression") for i in issues), issues
    found = {e for i in issues for e in i["expression"]}
    assert paths <= found, found
    assert store_counts(client, staff, "Patient", "ServiceRequest") == before


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[]", b'"Patient"', b"null"],
    ids=["broken", "empty", "array", "string", "null"],
)
def test_a_body_that_is_not_a_json_object_is_400_and_nothing_stored(
    client: FlaskClient, staff: dict[str, str], raw: bytes
) -> None:
    r = client.post(f"{BASE}/Patient", data=raw, headers=staff)
    assert r.status_code == 400
    assert code_of(r) == "VALIDATION_ERROR"
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


def test_update_with_an_invalid_body_is_400_and_keeps_the_version(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    sr = create(client, staff, service_request(pid))
    r = client.put(
        f"{BASE}/ServiceRequest/{sr['id']}",
        json={**sr, "status": "finished"},
        headers=with_headers(staff, **{"If-Match": 'W/"1"'}),
    )
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["ServiceRequest.status"]
    got = client.get(f"{BASE}/ServiceRequest/{sr['id']}", headers=staff).get_json()
    assert got["meta"]["versionId"] == "1"
    assert got["status"] == "draft"


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda p: encounter("pat-does-not-exist"), "Encounter.subject"),
        (lambda p: allergy_intolerance("pat-does-not-exist"), "AllergyIntolerance.patient"),
        (lambda p: service_request(p, basedOn=[{"reference": "ServiceRequest/ord-nope"}]), "ServiceRequest.basedOn[0]"),
    ],
    ids=["encounter-patient", "allergy-patient", "order-based-on"],
)  # fmt: skip
def test_reference_to_a_missing_resource_is_400_and_nothing_stored(
    client: FlaskClient, staff: dict[str, str], pid: str, build: Mutator, path: str
) -> None:
    body = build(pid)
    rtype = body["resourceType"]
    before = store_counts(client, staff, rtype)
    r = post(client, staff, body)
    assert r.status_code == 400, r.get_json()
    assert code_of(r) == "VALIDATION_ERROR"
    found = {e for i in r.get_json()["issue"] for e in i.get("expression", [])}
    assert path in found, found
    assert store_counts(client, staff, rtype) == before


@pytest.mark.parametrize(
    ("build", "status", "code"),
    [
        (lambda p: service_request("pat-does-not-exist"), 404, "PATIENT_NOT_FOUND"),
        (lambda p: medication_request("pat-does-not-exist"), 404, "PATIENT_NOT_FOUND"),
        (lambda p: nutrition_order("pat-does-not-exist"), 404, "PATIENT_NOT_FOUND"),
        (lambda p: service_request(p, encounter={"reference": "Encounter/enc-nope"}), 404, "ENCOUNTER_NOT_FOUND"),
    ],
    ids=["sr-patient", "mr-patient", "no-patient", "sr-encounter"],
)  # fmt: skip
def test_order_for_a_missing_patient_or_encounter_is_404_and_nothing_stored(
    client: FlaskClient, staff: dict[str, str], pid: str, build: Mutator, status: int, code: str
) -> None:
    """Orders check their patient and encounter first (DESIGN §5): 404 with the domain code."""
    body = build(pid)
    rtype = body["resourceType"]
    before = store_counts(client, staff, rtype, "DetectedIssue")
    r = post(client, staff, body)
    assert r.status_code == status, r.get_json()
    assert code_of(r) == code
    assert r.get_json()["issue"][0]["code"] == "not-found"
    assert store_counts(client, staff, rtype, "DetectedIssue") == before


NOT_DRAFT: list[tuple[Builder, str]] = [
    (service_request, "active"),
    (service_request, "completed"),
    (medication_request, "active"),
    (medication_request, "on-hold"),
    (nutrition_order, "active"),
    (nutrition_order, "revoked"),
]


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(
    ("build", "status"), NOT_DRAFT, ids=[f"{b.__name__}-{s}" for b, s in NOT_DRAFT]
)
def test_an_order_created_in_a_status_other_than_draft_is_400_and_nothing_stored(
    client: FlaskClient, staff: dict[str, str], pid: str, build: Builder, status: str, method: str
) -> None:
    """Orders are born drafts; every other status is reached through the workflow (§5)."""
    body = build(pid)
    rtype = body["resourceType"]
    before = store_counts(client, staff, rtype, "DetectedIssue", "Task")
    if method == "POST":
        r = post(client, staff, {**body, "status": status})
    else:
        r = client.put(
            f"{BASE}/{rtype}/ord-upstream-1",
            json={**body, "id": "ord-upstream-1", "status": status},
            headers=staff,
        )
    assert r.status_code == 400, r.get_json()
    assert code_of(r) == "VALIDATION_ERROR"
    assert r.get_json()["issue"][0]["expression"] == [f"{rtype}.status"]
    assert client.get(f"{BASE}/{rtype}/ord-upstream-1", headers=staff).status_code == 404
    assert store_counts(client, staff, rtype, "DetectedIssue", "Task") == before


# ---------------------------------------------------------------------------- Prefer
def test_prefer_return_minimal_gives_an_empty_body_with_headers(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    r = post(client, with_headers(staff, Prefer="return=minimal"), service_request(pid))
    assert r.status_code == 201
    assert r.data == b""
    assert r.headers["ETag"] == 'W/"1"'
    location = r.headers["Location"]
    rid = location.split("/ServiceRequest/")[1].split("/")[0]
    assert client.get(f"{BASE}/ServiceRequest/{rid}", headers=staff).status_code == 200

    upd = client.put(
        f"{BASE}/ServiceRequest/{rid}",
        json=service_request(pid, id=rid, priority="urgent"),
        headers=with_headers(staff, Prefer="return=minimal", **{"If-Match": 'W/"1"'}),
    )
    assert upd.status_code == 200, upd.get_json()
    assert upd.data == b""
    assert upd.headers["ETag"] == 'W/"2"'
    assert client.get(f"{BASE}/ServiceRequest/{rid}", headers=staff).get_json()["priority"] == (
        "urgent"
    )


def test_prefer_return_operation_outcome(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    r = post(client, with_headers(staff, Prefer="return=OperationOutcome"), service_request(pid))
    assert r.status_code == 201
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert r.headers["Location"]
    assert total(client, staff, "ServiceRequest") == 1


def test_prefer_return_representation_is_the_default(
    client: FlaskClient, staff: dict[str, str], pid: str
) -> None:
    r = post(client, with_headers(staff, Prefer="return=representation"), service_request(pid))
    assert r.status_code == 201
    assert r.get_json()["resourceType"] == "ServiceRequest"


# ---------------------------------------------------------------------------- negotiation / limits
@pytest.mark.parametrize(
    ("query", "extra", "ok"),
    [
        ("_format=xml", {}, False),
        ("_format=application/fhir%2Bxml", {}, False),
        ("", {"Accept": "application/xml"}, False),
        ("", {"Accept": "application/fhir+xml"}, False),
        ("", {"Accept": "text/html"}, False),
        ("_format=json", {}, True),
        ("_format=application/fhir%2Bjson", {}, True),
        ("", {"Accept": "application/fhir+json"}, True),
        ("", {"Accept": "application/json"}, True),
        ("", {"Accept": "*/*"}, True),
    ],
)
def test_only_json_is_served(
    client: FlaskClient,
    staff: dict[str, str],
    pid: str,
    query: str,
    extra: dict[str, str],
    ok: bool,
) -> None:
    r = client.get(f"{BASE}/Patient/{pid}?{query}", headers=with_headers(staff, **extra))
    if ok:
        assert r.status_code == 200
        assert r.get_json()["id"] == pid
    else:
        assert r.status_code == 406
        assert r.get_json()["resourceType"] == "OperationOutcome"
        assert r.headers["Content-Type"].startswith("application/fhir+json")


def test_write_asking_for_xml_is_406_and_stores_nothing(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    r = client.post(f"{BASE}/Patient?_format=xml", json=patient(), headers=staff)
    assert r.status_code == 406
    r = client.post(
        f"{BASE}/Patient", json=patient(), headers=with_headers(staff, Accept="application/xml")
    )
    assert r.status_code == 406
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_non_json_content_type_is_415_and_stores_nothing(
    client: FlaskClient, staff: dict[str, str], ctype: str
) -> None:
    r = client.post(
        f"{BASE}/Patient",
        data=orjson.dumps(patient()),
        headers=with_headers(staff, **{"Content-Type": ctype}),
    )
    assert r.status_code == 415
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


def test_json_content_type_with_charset_is_accepted(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    r = client.post(
        f"{BASE}/Patient",
        data=orjson.dumps(patient()),
        headers=with_headers(staff, **{"Content-Type": "application/json; charset=utf-8"}),
    )
    assert r.status_code == 201


def test_body_over_one_mebibyte_is_413_and_stores_nothing(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    big = patient(text={"status": "generated", "div": "<div>" + "x" * (1024 * 1024) + "</div>"})
    r = client.post(f"{BASE}/Patient", data=orjson.dumps(big), headers=staff)
    assert r.status_code == 413
    assert code_of(r) == "PAYLOAD_TOO_LARGE"
    assert store_counts(client, staff, "Patient") == {"Patient": 0, "Provenance": 0}


# ---------------------------------------------------------------------------- Provenance
def provenances_for(
    client: FlaskClient, h: dict[str, str], rtype: str, rid: str
) -> list[dict[str, Any]]:
    r = client.get(f"{BASE}/Provenance?target={rtype}/{rid}&_sort=_lastUpdated", headers=h)
    assert r.status_code == 200, r.get_json()
    return [e["resource"] for e in r.get_json().get("entry", []) if e["search"]["mode"] == "match"]


def activity(prov: dict[str, Any]) -> str:
    return prov["activity"]["coding"][0]["code"]


@pytest.mark.parametrize(("rtype", "build", "prefix"), CREATABLE, ids=[c[0] for c in CREATABLE])
def test_every_create_records_a_provenance(
    client: FlaskClient, headers: TokenFactory, pid: str, rtype: str, build: Builder, prefix: str
) -> None:
    writer = headers("ADMIN", "CLINICIAN", sub="writer-1")
    rid = create(client, writer, build(pid))["id"]
    provs = provenances_for(client, writer, rtype, rid)
    assert len(provs) == 1
    prov = provs[0]
    assert SERVER_ID.match(prov["id"])
    assert prov["target"] == [{"reference": f"{rtype}/{rid}/_history/1"}]
    assert activity(prov) == "CREATE"
    assert prov["agent"][0]["who"]["identifier"]["value"] == "writer-1"
    assert prov["recorded"]


def test_provenance_tracks_each_version_with_agent_activity_and_reason(
    client: FlaskClient, headers: TokenFactory, pid: str
) -> None:
    alice = headers("CLINICIAN", sub="alice")
    bob = headers("CLINICIAN", sub="bob")
    why = orjson.dumps({"resourceType": "Provenance", "reason": [{"text": "why"}]}).decode()
    r = post(client, with_headers(alice, **{"X-Provenance": why}), service_request(pid))
    assert r.status_code == 201
    sr = r.get_json()
    upd = client.put(
        f"{BASE}/ServiceRequest/{sr['id']}",
        json={**sr, "note": [{"text": "fasting sample"}]},
        headers=with_headers(bob, **{"If-Match": 'W/"1"'}),
    )
    assert upd.status_code == 200, upd.get_json()

    provs = provenances_for(client, alice, "ServiceRequest", sr["id"])
    assert len(provs) == 2
    by_version = {p["target"][0]["reference"]: p for p in provs}
    created = by_version[f"ServiceRequest/{sr['id']}/_history/1"]
    updated = by_version[f"ServiceRequest/{sr['id']}/_history/2"]
    assert activity(created) == "CREATE"
    assert activity(updated) == "UPDATE"
    assert created["agent"][0]["who"]["identifier"]["value"] == "alice"
    assert updated["agent"][0]["who"]["identifier"]["value"] == "bob"
    assert created["reason"] == [{"text": "why"}]
    assert "reason" not in updated

    # the same Provenances through the patient compartment and through _revinclude
    by_patient = client.get(f"{BASE}/Provenance?patient={pid}", headers=alice).get_json()
    assert {e["resource"]["id"] for e in by_patient["entry"]} >= {created["id"], updated["id"]}
    rev = client.get(
        f"{BASE}/ServiceRequest?_id={sr['id']}&_revinclude=Provenance:target", headers=alice
    ).get_json()
    included = {e["resource"]["id"] for e in rev["entry"] if e["search"]["mode"] == "include"}
    assert included == {created["id"], updated["id"]}


def test_conditional_create_that_matches_writes_no_provenance(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    cond = with_headers(staff, **{"If-None-Exist": f"identifier={MRN}|p1"})
    body = patient(identifier=[{"system": MRN, "value": "p1"}])
    pid = post(client, cond, body).get_json()["id"]
    assert post(client, cond, body).status_code == 200
    assert len(provenances_for(client, staff, "Patient", pid)) == 1


# ---------------------------------------------------------------------------- metadata / routing
def test_metadata_needs_no_token_and_is_the_r4_capability_statement(client: FlaskClient) -> None:
    r = client.get(f"{BASE}/metadata")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    body = r.get_json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in body["format"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/Observation"),
        ("GET", "/Observation/123"),
        ("POST", "/Observation"),
        ("GET", "/Observation/123/_history/1"),
        ("GET", "/patient"),
    ],
)
def test_unknown_resource_type_is_404_operation_outcome(
    client: FlaskClient, staff: dict[str, str], method: str, path: str
) -> None:
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    r = client.open(
        f"{BASE}{path}", method=method, json=body if method == "POST" else None, headers=staff
    )
    assert r.status_code == 404
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert r.get_json()["issue"][0]["code"] == "not-found"
