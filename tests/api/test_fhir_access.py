"""Who may see and do what on `/fhir/R4` (DESIGN §3, issue 2 item 4).

Tenant isolation on every interaction, role rules, the PATIENT compartment, SMART scopes and
the token failures, all through HTTP. A resource the caller may not see answers exactly like
one that does not exist.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from ulid import ULID
from werkzeug.test import TestResponse

from tests.conftest import TokenFactory
from tests.fhir_data import (
    allergy_intolerance,
    bundle,
    encounter,
    entry,
    medication_request,
    patient,
    plan_definition,
    service_request,
    task,
)
from tests.orders import task_for

BASE = "/fhir/R4"


def code_of(resp: TestResponse) -> str:
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]["details"]["coding"][0]["code"]


def issue_codes(resp: TestResponse) -> list[tuple[str, str]]:
    """(issue.code, error code) of every issue of an OperationOutcome answer."""
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    return [
        (i["code"], c["code"])
        for i in body["issue"]
        for c in i.get("details", {}).get("coding", [])
    ]


def fails_alike(
    hidden: TestResponse, missing: TestResponse, hidden_id: str, missing_id: str
) -> None:
    """A reference to another tenant's resource fails exactly like one to nothing at all."""
    assert hidden.status_code == missing.status_code, (hidden.get_json(), missing.get_json())
    assert issue_codes(hidden) == issue_codes(missing)
    assert json.loads(hidden.get_data(as_text=True)) == json.loads(
        missing.get_data(as_text=True).replace(missing_id, hidden_id)
    )


def create(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post(f"{BASE}/{body['resourceType']}", json=body, headers=h)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def put(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"{BASE}/{body['resourceType']}/{body['id']}", json=body, headers=h)
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()


def search(client: FlaskClient, h: dict[str, str], rtype: str, query: str = "") -> dict[str, Any]:
    r = client.get(f"{BASE}/{rtype}?{query}", headers=h)
    assert r.status_code == 200, (query, r.get_json())
    return r.get_json()


def entries(bundle_: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle_.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


def total(client: FlaskClient, h: dict[str, str], rtype: str, query: str = "") -> int:
    return search(client, h, rtype, f"_summary=count{'&' + query if query else ''}")["total"]


def same_as_missing(
    hidden: TestResponse, missing: TestResponse, hidden_id: str, missing_id: str
) -> None:
    """The answer for a hidden resource is the answer for an absent one, id for id."""
    assert hidden.status_code == missing.status_code == 404
    a = hidden.get_data(as_text=True)
    b = missing.get_data(as_text=True).replace(missing_id, hidden_id)
    assert json.loads(a) == json.loads(b)
    assert code_of(hidden) == code_of(missing)


@pytest.fixture
def other_tenant() -> str:
    return f"t-{ULID()}".lower()


# ---------------------------------------------------------------------------- tenants
def test_another_tenants_resource_is_indistinguishable_from_a_missing_one(
    client: FlaskClient, headers: TokenFactory, other_tenant: str
) -> None:
    a = headers("ADMIN", "CLINICIAN")
    b = headers("ADMIN", "CLINICIAN", tenant_id=other_tenant)
    pid = create(client, a, patient())
    sid = create(client, a, service_request(pid))
    ghost = "ord-01J8Z0000000000000000000ZZ"
    for suffix in ("", "/_history", "/_history/1"):
        hidden = client.get(f"{BASE}/ServiceRequest/{sid}{suffix}", headers=b)
        missing = client.get(f"{BASE}/ServiceRequest/{ghost}{suffix}", headers=b)
        same_as_missing(hidden, missing, sid, ghost)
    # searches in tenant B see nothing of tenant A
    assert total(client, b, "ServiceRequest") == 0
    assert total(client, b, "ServiceRequest", f"_id={sid}") == 0
    assert total(client, b, "ServiceRequest", f"patient={pid}") == 0
    assert total(client, b, "Patient") == 0
    assert total(client, b, "Provenance") == 0
    assert total(client, b, "Provenance", f"target=ServiceRequest/{sid}") == 0
    # and tenant A still sees its own
    assert total(client, a, "ServiceRequest", f"_id={sid}") == 1


def test_another_tenants_resource_cannot_be_updated_or_conditionally_matched(
    client: FlaskClient, headers: TokenFactory, other_tenant: str
) -> None:
    a = headers("ADMIN", "CLINICIAN")
    b = headers("ADMIN", "CLINICIAN", tenant_id=other_tenant)
    pid = create(client, a, patient(identifier=[{"system": "urn:mrn", "value": "1"}]))
    # If-Match against A's resource from B: as for a resource that does not exist
    r = client.put(
        f"{BASE}/Patient/{pid}",
        json=patient(pid, gender="male"),
        headers={**b, "If-Match": 'W/"1"'},
    )
    ghost = client.put(
        f"{BASE}/Patient/pat-ghost",
        json=patient("pat-ghost", gender="male"),
        headers={**b, "If-Match": 'W/"1"'},
    )
    assert r.status_code == ghost.status_code
    assert code_of(r) == code_of(ghost)
    assert client.get(f"{BASE}/Patient/{pid}", headers=a).get_json()["meta"]["versionId"] == "1"
    # a conditional create in B does not match A's patient
    cond = client.post(
        f"{BASE}/Patient",
        json=patient(identifier=[{"system": "urn:mrn", "value": "1"}]),
        headers={**b, "If-None-Exist": "identifier=urn:mrn|1"},
    )
    assert cond.status_code == 201
    assert cond.get_json()["id"] != pid


def test_include_and_revinclude_never_cross_tenants(
    client: FlaskClient, headers: TokenFactory, other_tenant: str
) -> None:
    """Same ids in two tenants: every resource B gets back must be B's own version."""
    a = headers("ADMIN", "CLINICIAN", sub="writer-a")
    b = headers("ADMIN", "CLINICIAN", sub="writer-b", tenant_id=other_tenant)
    for h, family in ((a, "TenantA"), (b, "TenantB")):
        put(client, h, patient("shared-pat", name=[{"family": family}]))
        put(client, h, service_request("shared-pat", id="shared-sr", note=[{"text": family}]))
        task_for(
            client, h, task("shared-pat", focus="ServiceRequest/shared-sr", note=[{"text": family}])
        )
    # an extra A-only order on the same patient id must not show up for B
    create(client, a, service_request("shared-pat", note=[{"text": "TenantA"}]))

    queries = [
        (
            "ServiceRequest",
            "_include=ServiceRequest:patient&_revinclude=Provenance:target&_revinclude=Task:focus",
        ),
        ("Task", "_include=Task:focus&_include=Task:patient"),
        ("Patient", "_revinclude=ServiceRequest:patient"),
        ("Provenance", "_include=Provenance:target"),
    ]
    for rtype, query in queries:
        result = search(client, b, rtype, query)
        resources = entries(result)
        assert resources, (rtype, query)
        text = json.dumps(resources)
        assert "TenantA" not in text, (rtype, query)
        assert "writer-a" not in text, (rtype, query)
    sr_search = search(
        client, b, "ServiceRequest", "_include=ServiceRequest:patient&_revinclude=Provenance:target"
    )
    assert [r["id"] for r in entries(sr_search, "match")] == ["shared-sr"]
    inc = entries(sr_search, "include")
    assert [r["name"] for r in inc if r["resourceType"] == "Patient"] == [[{"family": "TenantB"}]]
    provs = [r for r in inc if r["resourceType"] == "Provenance"]
    assert len(provs) == 2  # the create and the activation that made the Task
    assert {p["agent"][0]["who"]["identifier"]["value"] for p in provs} == {"writer-b"}


def test_transaction_referencing_another_tenants_patient_fails_like_a_missing_reference(
    client: FlaskClient, headers: TokenFactory, other_tenant: str
) -> None:
    a = headers("ADMIN", "CLINICIAN")
    b = headers("ADMIN", "CLINICIAN", tenant_id=other_tenant)
    pid = create(client, a, patient())
    ghost = "pat-01J8Z0000000000000000000ZZ"
    answers = []
    for target in (pid, ghost):
        r = client.post(
            BASE,
            json=bundle("transaction", entry("POST", "ServiceRequest", service_request(target))),
            headers=b,
        )
        answers.append(r)
    hidden, missing = answers
    fails_alike(hidden, missing, pid, ghost)
    # an order for an unknown patient is the order workflow's 404 PATIENT_NOT_FOUND
    assert hidden.status_code == 404
    assert code_of(hidden) == "PATIENT_NOT_FOUND"
    # the same through a plain create
    plain = client.post(f"{BASE}/ServiceRequest", json=service_request(pid), headers=b)
    plain_missing = client.post(f"{BASE}/ServiceRequest", json=service_request(ghost), headers=b)
    fails_alike(plain, plain_missing, pid, ghost)
    assert plain.status_code == 404
    assert code_of(plain) == "PATIENT_NOT_FOUND"
    # a non-order resource referencing A's patient: the generic reference check, 400 with a path
    for via_bundle in (True, False):
        replies = []
        for target in (pid, ghost):
            if via_bundle:
                body = bundle("transaction", entry("POST", "Encounter", encounter(target)))
                replies.append(client.post(BASE, json=body, headers=b))
            else:
                replies.append(client.post(f"{BASE}/Encounter", json=encounter(target), headers=b))
        fails_alike(replies[0], replies[1], pid, ghost)
        assert replies[0].status_code == 400
        assert code_of(replies[0]) == "VALIDATION_ERROR"
        paths = {e for i in replies[0].get_json()["issue"] for e in i.get("expression", [])}
        assert paths == {"Encounter.subject"}
    assert total(client, b, "ServiceRequest") == 0
    assert total(client, a, "ServiceRequest") == 0
    assert total(client, b, "Encounter") == 0
    assert total(client, a, "Encounter") == 0


# ---------------------------------------------------------------------------- roles
WRITES: list[tuple[str, str, str, int]] = [
    # (role, method, type, expected status)
    ("CLINICIAN", "POST", "ServiceRequest", 201),
    ("PRESCRIBER", "POST", "ServiceRequest", 201),
    ("NURSE", "POST", "ServiceRequest", 403),
    ("ADMIN", "POST", "ServiceRequest", 403),
    ("PATIENT", "POST", "ServiceRequest", 403),
    ("PRESCRIBER", "POST", "MedicationRequest", 201),
    ("CLINICIAN", "POST", "MedicationRequest", 201),
    ("NURSE", "POST", "MedicationRequest", 403),
    ("ADMIN", "PUT", "Patient", 201),
    ("ADMIN", "POST", "Patient", 201),
    ("CLINICIAN", "PUT", "Patient", 403),
    ("CLINICIAN", "POST", "Patient", 403),
    ("NURSE", "PUT", "Patient", 403),
    ("PRESCRIBER", "PUT", "Patient", 403),
    ("ADMIN", "POST", "Encounter", 201),
    ("CLINICIAN", "POST", "Encounter", 403),
    ("ADMIN", "POST", "AllergyIntolerance", 201),
    ("NURSE", "POST", "AllergyIntolerance", 403),
    # Tasks are created by activation only (issue 11, item 6): POST is not an interaction.
    ("NURSE", "POST", "Task", 405),
    ("CLINICIAN", "POST", "Task", 405),
    ("ADMIN", "POST", "Task", 405),
    ("CLINICIAN", "POST", "PlanDefinition", 201),
    ("NURSE", "POST", "PlanDefinition", 403),
]


def _body(rtype: str, pid: str) -> dict[str, Any]:
    return {
        "ServiceRequest": lambda: service_request(pid),
        "MedicationRequest": lambda: medication_request(pid),
        "Patient": lambda: patient("pat-by-put"),
        "Encounter": lambda: encounter(pid),
        "AllergyIntolerance": lambda: allergy_intolerance(pid),
        "Task": lambda: task(pid),
        "PlanDefinition": lambda: plan_definition(),
    }[rtype]()


@pytest.mark.parametrize(("role", "method", "rtype", "expected"), WRITES)
def test_role_rules_for_writes(
    client: FlaskClient, headers: TokenFactory, role: str, method: str, rtype: str, expected: int
) -> None:
    admin = headers("ADMIN")
    pid = create(client, admin, patient())
    extra = {"patient_id": pid} if role == "PATIENT" else {}
    h = headers(role, **extra)
    body = _body(rtype, pid)
    before = total(client, admin, rtype)
    if method == "PUT":
        body.setdefault("id", "pat-by-put")
        r = client.put(f"{BASE}/{rtype}/{body['id']}", json=body, headers=h)
    else:
        body.pop("id", None)
        r = client.post(f"{BASE}/{rtype}", json=body, headers=h)
    assert r.status_code == expected, r.get_json()
    if expected in (403, 405):
        assert code_of(r) == ("FORBIDDEN" if expected == 403 else code_of(r))
        assert total(client, admin, rtype) == before
    else:
        assert total(client, admin, rtype) == before + 1


def test_clinician_cannot_update_an_existing_patient_but_admin_can(
    client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    pid = create(client, admin, patient())
    r = client.put(
        f"{BASE}/Patient/{pid}",
        json=patient(pid, gender="male"),
        headers={**clin, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 403
    assert code_of(r) == "FORBIDDEN"
    assert client.get(f"{BASE}/Patient/{pid}", headers=admin).get_json()["meta"]["versionId"] == "1"
    ok = client.put(
        f"{BASE}/Patient/{pid}",
        json=patient(pid, gender="male"),
        headers={**admin, "If-Match": 'W/"1"'},
    )
    assert ok.status_code == 200
    assert ok.get_json()["meta"]["versionId"] == "2"


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("CLINICIAN", True), ("NURSE", True), ("ADMIN", True), ("PRESCRIBER", False)],
)
def test_role_rules_for_reads(
    client: FlaskClient, headers: TokenFactory, role: str, allowed: bool
) -> None:
    writer = headers("ADMIN", "CLINICIAN")
    pid = create(client, writer, patient())
    sid = create(client, writer, service_request(pid))
    h = headers(role)
    for url in (
        f"{BASE}/ServiceRequest/{sid}",
        f"{BASE}/ServiceRequest/{sid}/_history/1",
        f"{BASE}/ServiceRequest/{sid}/_history",
        f"{BASE}/ServiceRequest?patient={pid}",
    ):
        r = client.get(url, headers=h)
        if allowed:
            assert r.status_code == 200, (url, r.get_json())
        else:
            assert r.status_code == 403, (url, r.get_json())
            assert code_of(r) == "FORBIDDEN"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/Provenance"),
        ("PUT", "/Provenance/prov-1"),
        ("POST", "/DetectedIssue"),
        ("PUT", "/DetectedIssue/cds-1"),
    ],
)
def test_server_written_types_cannot_be_written_over_rest(
    client: FlaskClient, headers: TokenFactory, method: str, path: str
) -> None:
    h = headers("ADMIN", "CLINICIAN")
    pid = create(client, h, patient())
    rtype = path.split("/")[1]
    body: dict[str, Any] = {
        "Provenance": {
            "resourceType": "Provenance",
            "target": [{"reference": f"Patient/{pid}"}],
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"who": {"display": "me"}}],
        },
        "DetectedIssue": {
            "resourceType": "DetectedIssue",
            "status": "final",
            "patient": {"reference": f"Patient/{pid}"},
        },
    }[rtype]
    if method == "PUT":
        body["id"] = path.rsplit("/", 1)[1]
    before = total(client, h, rtype)
    r = client.open(f"{BASE}{path}", method=method, json=body, headers=h)
    assert r.status_code == 405
    assert r.get_json()["resourceType"] == "OperationOutcome"
    assert total(client, h, rtype) == before


# ---------------------------------------------------------------------------- PATIENT compartment
@pytest.fixture
def two_patients(client: FlaskClient, headers: TokenFactory) -> dict[str, Any]:
    staff = headers("ADMIN", "CLINICIAN")
    me, other = (
        create(client, staff, patient(name=[{"family": "Me"}])),
        create(client, staff, patient(name=[{"family": "Other"}])),
    )
    mine = create(client, staff, service_request(me))
    theirs = create(client, staff, service_request(other))
    my_mr = create(client, staff, medication_request(me))
    their_mr = create(client, staff, medication_request(other))
    # Tasks come from activation: each belongs to its own order's patient (issue 11, item 6)
    my_task = task_for(client, staff, task(me, focus=f"ServiceRequest/{mine}"))
    their_task = task_for(client, staff, task(other, focus=f"ServiceRequest/{theirs}"))
    return {
        "staff": staff,
        "me": me,
        "other": other,
        "mine": mine,
        "theirs": theirs,
        "my_mr": my_mr,
        "their_mr": their_mr,
        "my_task": my_task,
        "their_task": their_task,
        "h": headers("PATIENT", patient_id=me),
    }


def test_patient_reads_own_orders_and_gets_404_for_others(
    client: FlaskClient, two_patients: dict[str, Any]
) -> None:
    w, h = two_patients, two_patients["h"]
    assert client.get(f"{BASE}/ServiceRequest/{w['mine']}", headers=h).status_code == 200
    assert client.get(f"{BASE}/Patient/{w['me']}", headers=h).status_code == 200
    ghost = "ord-01J8Z0000000000000000000ZZ"
    for rtype, rid in (
        ("ServiceRequest", w["theirs"]),
        ("MedicationRequest", w["their_mr"]),
        ("Patient", w["other"]),
    ):
        for suffix in ("", "/_history", "/_history/1"):
            hidden = client.get(f"{BASE}/{rtype}/{rid}{suffix}", headers=h)
            missing = client.get(f"{BASE}/{rtype}/{ghost}{suffix}", headers=h)
            same_as_missing(hidden, missing, rid, ghost)


@pytest.mark.parametrize(
    ("rtype", "query", "expected"),
    [
        ("ServiceRequest", "", ["mine"]),
        ("ServiceRequest", "patient={other}", []),
        ("ServiceRequest", "subject=Patient/{other}", []),
        ("ServiceRequest", "_id={theirs}", []),
        ("ServiceRequest", "_id={mine},{theirs}", ["mine"]),
        ("MedicationRequest", "", ["my_mr"]),
        ("MedicationRequest", "patient={other}", []),
        ("Task", "", ["my_task"]),
        ("Task", "focus=ServiceRequest/{theirs}", []),
        ("Patient", "", ["me"]),
        ("Patient", "name=Other", []),
    ],
)
def test_patient_search_returns_only_their_own_resources(
    client: FlaskClient, two_patients: dict[str, Any], rtype: str, query: str, expected: list[str]
) -> None:
    w = two_patients
    result = search(client, w["h"], rtype, query.format(**w))
    assert sorted(r["id"] for r in entries(result, "match")) == sorted(w[k] for k in expected)
    assert result["total"] == len(expected)


@pytest.mark.parametrize(
    ("rtype", "query"),
    [
        ("ServiceRequest", "_include=ServiceRequest:patient"),
        ("ServiceRequest", "_revinclude=Provenance:target&_revinclude=Task:focus"),
        ("Task", "_include=Task:focus&_include=Task:patient"),
        ("Patient", "_revinclude=ServiceRequest:patient&_revinclude=MedicationRequest:patient"),
        ("Provenance", "_include=Provenance:target"),
        ("MedicationRequest", "_include=MedicationRequest:patient&_revinclude=Provenance:target"),
    ],
)
def test_patient_includes_never_reveal_other_patients(
    client: FlaskClient, two_patients: dict[str, Any], rtype: str, query: str
) -> None:
    w = two_patients
    result = search(client, w["h"], rtype, query)
    ids = {r["id"] for r in entries(result)}
    forbidden = {w["other"], w["theirs"], w["their_mr"], w["their_task"]}
    assert not ids & forbidden
    text = json.dumps(entries(result))
    for hidden in ("other", "their_mr", "their_task"):
        assert w[hidden] not in text, hidden
    for resource in entries(result):
        if resource["resourceType"] == "Provenance":
            refs = [t["reference"] for t in resource["target"]]
            assert not any(
                w["theirs"] in ref or w["their_mr"] in ref or w["other"] in ref for ref in refs
            )


def test_patient_cannot_write(client: FlaskClient, two_patients: dict[str, Any]) -> None:
    w, h = two_patients, two_patients["h"]
    r = client.post(f"{BASE}/ServiceRequest", json=service_request(w["me"]), headers=h)
    assert r.status_code == 403
    assert code_of(r) == "FORBIDDEN"
    r = client.put(f"{BASE}/Patient/{w['me']}", json=patient(w["me"], gender="male"), headers=h)
    assert r.status_code == 403
    assert total(client, w["staff"], "ServiceRequest") == 2


def test_patient_token_without_a_patient_id_is_refused(
    client: FlaskClient, headers: TokenFactory
) -> None:
    r = client.get(f"{BASE}/ServiceRequest", headers=headers("PATIENT"))
    assert r.status_code == 403
    assert code_of(r) == "FORBIDDEN"


def test_patient_identified_by_fhir_user_claim(
    client: FlaskClient, two_patients: dict[str, Any], headers: TokenFactory
) -> None:
    w = two_patients
    h = headers("PATIENT", extra_claims={"fhirUser": f"Patient/{w['me']}"})
    result = search(client, h, "ServiceRequest")
    assert [r["id"] for r in entries(result, "match")] == [w["mine"]]


# ---------------------------------------------------------------------------- SMART scopes
def test_smart_read_scope_allows_only_reading_that_type(
    client: FlaskClient, headers: TokenFactory
) -> None:
    staff = headers("ADMIN", "CLINICIAN")
    pid = create(client, staff, patient())
    sid = create(client, staff, service_request(pid))
    mid = create(client, staff, medication_request(pid))
    h = headers("CLINICIAN", scope="openid user/ServiceRequest.read")
    assert client.get(f"{BASE}/ServiceRequest/{sid}", headers=h).status_code == 200
    assert client.get(f"{BASE}/ServiceRequest/{sid}/_history/1", headers=h).status_code == 200
    assert search(client, h, "ServiceRequest")["total"] == 1
    for url in (
        f"{BASE}/MedicationRequest/{mid}",
        f"{BASE}/MedicationRequest",
        f"{BASE}/Patient/{pid}",
    ):
        r = client.get(url, headers=h)
        assert r.status_code == 403, url
        assert code_of(r) == "FORBIDDEN"
    r = client.post(f"{BASE}/ServiceRequest", json=service_request(pid), headers=h)
    assert r.status_code == 403
    assert code_of(r) == "FORBIDDEN"
    # a change the workflow allows (cancelling the draft) is refused by the read-only scope
    r = client.put(
        f"{BASE}/ServiceRequest/{sid}",
        json=service_request(pid, id=sid, status="revoked"),
        headers={**h, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 403
    assert code_of(r) == "FORBIDDEN"
    assert client.get(f"{BASE}/ServiceRequest/{sid}", headers=staff).get_json()["status"] == "draft"
    batch = client.post(
        BASE,
        json=bundle("transaction", entry("POST", "ServiceRequest", service_request(pid))),
        headers=h,
    )
    assert batch.status_code == 403
    assert total(client, staff, "ServiceRequest") == 1


def test_smart_scope_covers_included_resources(client: FlaskClient, headers: TokenFactory) -> None:
    """An `_include`/`_revinclude` may not return a type the token's scopes do not grant."""
    staff = headers("ADMIN", "CLINICIAN")
    pid = create(client, staff, patient())
    create(client, staff, service_request(pid))
    h = headers("CLINICIAN", scope="user/ServiceRequest.read")
    for query in ("_include=ServiceRequest:patient", "_revinclude=Provenance:target"):
        r = client.get(f"{BASE}/ServiceRequest?{query}", headers=h)
        if r.status_code == 200:
            types = {e["resource"]["resourceType"] for e in r.get_json().get("entry", [])}
            assert types <= {"ServiceRequest", "OperationOutcome"}, (query, types)
        else:
            assert r.status_code == 403, (query, r.get_json())


@pytest.mark.parametrize(
    "scope", ["user/*.cruds", "user/*.*", "user/ServiceRequest.* user/MedicationRequest.read"]
)
def test_broad_smart_scopes_allow_reading_and_writing(
    client: FlaskClient, headers: TokenFactory, scope: str
) -> None:
    staff = headers("ADMIN", "CLINICIAN")
    pid = create(client, staff, patient())
    mid = create(client, staff, medication_request(pid))
    h = headers("CLINICIAN", scope=scope)
    assert client.get(f"{BASE}/MedicationRequest/{mid}", headers=h).status_code == 200
    r = client.post(f"{BASE}/ServiceRequest", json=service_request(pid), headers=h)
    assert r.status_code == 201, r.get_json()


def test_scopes_never_widen_roles(client: FlaskClient, headers: TokenFactory) -> None:
    admin = headers("ADMIN")
    pid = create(client, admin, patient())
    nurse = headers("NURSE", scope="user/*.cruds")
    r = client.post(f"{BASE}/ServiceRequest", json=service_request(pid), headers=nurse)
    assert r.status_code == 403
    assert total(client, headers("CLINICIAN"), "ServiceRequest") == 0


# ---------------------------------------------------------------------------- authentication errors
def _auth_case(name: str, headers: TokenFactory, other_tenant: str) -> dict[str, str]:
    good = headers("CLINICIAN")
    if name == "no-token":
        return {k: v for k, v in good.items() if k != "Authorization"}
    if name == "not-bearer":
        return {**good, "Authorization": "Basic dXNlcjpwYXNz"}
    if name == "garbage-token":
        return {**good, "Authorization": "Bearer not.a.jwt"}
    if name == "expired-token":
        return headers("CLINICIAN", expires_in=-3600)
    if name == "tampered-token":
        head, payload, sig = good["Authorization"].removeprefix("Bearer ").split(".")
        return {**good, "Authorization": f"Bearer {head}.{payload}.{sig[::-1]}"}
    if name == "no-tenant-header":
        return {k: v for k, v in good.items() if k != "X-Tenant-ID"}
    if name == "blank-tenant-header":
        return {**good, "X-Tenant-ID": " "}
    if name == "tenant-not-in-token":
        return {**headers("CLINICIAN", tenant_id=other_tenant), "X-Tenant-ID": good["X-Tenant-ID"]}
    if name == "no-entitlement":
        return headers("CLINICIAN", entitlements=())
    if name == "other-entitlement":
        return headers("CLINICIAN", entitlements=("billing",))
    raise AssertionError(name)


AUTH_CASES = [
    ("no-token", 401, "UNAUTHENTICATED"),
    ("not-bearer", 401, "UNAUTHENTICATED"),
    ("garbage-token", 401, "UNAUTHENTICATED"),
    ("expired-token", 401, "UNAUTHENTICATED"),
    ("tampered-token", 401, "UNAUTHENTICATED"),
    ("no-tenant-header", 400, "TENANT_REQUIRED"),
    ("blank-tenant-header", 400, "TENANT_REQUIRED"),
    ("tenant-not-in-token", 403, "TENANT_FORBIDDEN"),
    ("no-entitlement", 403, "MODULE_NOT_ENTITLED"),
    ("other-entitlement", 403, "MODULE_NOT_ENTITLED"),
]


@pytest.mark.parametrize(("case", "status", "code"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/ServiceRequest"), ("GET", "/Patient/pat-x"), ("POST", "/Patient"), ("POST", "")],
)
def test_auth_failures_answer_status_and_code_as_operation_outcome(
    client: FlaskClient,
    headers: TokenFactory,
    other_tenant: str,
    case: str,
    status: int,
    code: str,
    method: str,
    path: str,
) -> None:
    h = _auth_case(case, headers, other_tenant)
    body: dict[str, Any] | None = None
    if method == "POST":
        body = patient() if path else bundle("transaction", entry("POST", "Patient", patient()))
    r = client.open(f"{BASE}{path}", method=method, json=body, headers=h)
    assert r.status_code == status, r.get_json()
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    assert code_of(r) == code
    if status == 401:
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert total(client, headers("ADMIN"), "Patient") == 0
