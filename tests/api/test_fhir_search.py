"""FHIR search through `/fhir/R4` (issue 2: parameters, prefixes, paging, _include …).

Every parameter case stores one resource that must match and one that must not, in the
test's own tenant, and checks the searchset holds exactly the one that matches.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import (
    ALLERGY_CLINICAL,
    LOINC,
    RXNORM,
    SNOMED,
    allergy_intolerance,
    bundle,
    encounter,
    entry,
    medication_request,
    nutrition_order,
    patient,
    plan_definition,
    service_request,
    task,
)
from tests.orders import ORDER_RESOURCE_TYPES, order_with_status, task_for

BASE = "/fhir/R4"
SUBSETTED = "SUBSETTED"


# ---------------------------------------------------------------------------- helpers
def ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def create(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post(f"{BASE}/{body['resourceType']}", json=body, headers=h)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def order(client: FlaskClient, h: dict[str, str], body: dict[str, Any]) -> str:
    """An order in `body["status"]`, reached through the workflow (orders are born drafts)."""
    return str(order_with_status(client, h, body)["id"])


def create_many(client: FlaskClient, h: dict[str, str], bodies: list[dict[str, Any]]) -> list[str]:
    """Create resources in one transaction (fast); returns their ids in order."""
    r = client.post(
        BASE,
        json=bundle("transaction", *[entry("POST", b["resourceType"], b) for b in bodies]),
        headers=h,
    )
    assert r.status_code == 200, r.get_json()
    return [e["resource"]["id"] for e in r.get_json()["entry"]]


def search(client: FlaskClient, h: dict[str, str], rtype: str, query: str = "") -> dict[str, Any]:
    r = client.get(f"{BASE}/{rtype}?{query}" if query else f"{BASE}/{rtype}", headers=h)
    assert r.status_code == 200, (query, r.get_json())
    body = r.get_json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def matches(bundle_: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle_.get("entry", []) if e["search"]["mode"] == "match"]


def included(bundle_: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle_.get("entry", [])
        if e["search"]["mode"] == "include"
    ]


def link(bundle_: dict[str, Any], relation: str) -> str | None:
    for item in bundle_.get("link", []):
        if item["relation"] == relation:
            parts = urlsplit(item["url"])
            return f"{parts.path}?{parts.query}" if parts.query else parts.path
    return None


@pytest.fixture
def staff(headers: TokenFactory) -> dict[str, str]:
    return headers("ADMIN", "CLINICIAN")


# ---------------------------------------------------------------------------- world
class World:
    """Supporting resources for a case, created only when a case names them."""

    def __init__(self, client: FlaskClient, h: dict[str, str]) -> None:
        self.client, self.h = client, h
        self.created: set[str] = set()

    def _make(self, body: dict[str, Any]) -> str:
        rid = create(self.client, self.h, body)
        self.created.add(rid)
        return rid

    @cached_property
    def p1(self) -> str:
        return self._make(patient(name=[{"family": "Alpha"}], birthDate="1960-01-01"))

    @cached_property
    def p2(self) -> str:
        return self._make(patient(name=[{"family": "Beta"}], birthDate="1961-01-01"))

    @cached_property
    def e1(self) -> str:
        return self._make(encounter(self.p1))

    @cached_property
    def e2(self) -> str:
        return self._make(encounter(self.p1))

    @cached_property
    def sr1(self) -> str:
        return self._make(service_request(self.p1))

    @cached_property
    def sr2(self) -> str:
        return self._make(service_request(self.p1))

    def fmt(self, template: str) -> str:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        return template.format(**{n: getattr(self, n) for n in names})


Overrides = Callable[[World], dict[str, Any]]
BASE_BUILDERS: dict[str, Callable[[World, dict[str, Any]], dict[str, Any]]] = {
    "ServiceRequest": lambda w, o: service_request(w.p1, **o),
    "MedicationRequest": lambda w, o: medication_request(w.p1, **o),
    "NutritionOrder": lambda w, o: nutrition_order(w.p1, **o),
    "Task": lambda w, o: task(w.p1, **o),
    "Patient": lambda w, o: patient(**o),
    "Encounter": lambda w, o: encounter(w.p1, **o),
    "AllergyIntolerance": lambda w, o: allergy_intolerance(w.p1, **o),
    "PlanDefinition": lambda w, o: plan_definition(**o),
}


def same(**kw: Any) -> Overrides:
    return lambda w: kw


def ident(value: str, system: str | None = "urn:orders") -> dict[str, Any]:
    item = {"value": value}
    if system:
        item["system"] = system
    return {"identifier": [item]}


SR, MR, NO, TASK = "ServiceRequest", "MedicationRequest", "NutritionOrder", "Task"
PAT, ENC, AI, PD = "Patient", "Encounter", "AllergyIntolerance", "PlanDefinition"

# (case id, type, overrides of the resource that must match, of the one that must not, queries)
PARAM_CASES: list[tuple[str, str, Overrides, Overrides, list[str]]] = [
    # ServiceRequest
    ("sr-patient", SR, same(), lambda w: {"subject": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("sr-subject", SR, same(), lambda w: {"subject": ref(PAT, w.p2)}, ["subject=Patient/{p1}", "subject={p1}"]),
    ("sr-encounter", SR, lambda w: {"encounter": ref(ENC, w.e1)}, lambda w: {"encounter": ref(ENC, w.e2)},
     ["encounter=Encounter/{e1}", "encounter={e1}"]),
    ("sr-status", SR, same(status="active"), same(status="draft"), ["status=active"]),
    ("sr-intent", SR, same(intent="plan"), same(intent="order"), ["intent=plan"]),
    ("sr-category", SR, same(category=[cc(SNOMED, "363679005")]), same(),
     ["category=363679005", f"category={SNOMED}|363679005"]),
    ("sr-code", SR, same(code=cc(LOINC, "24323-8")), same(), ["code=24323-8", f"code={LOINC}|24323-8"]),
    ("sr-code-no-system", SR, same(code={"coding": [{"code": "X9"}]}), same(code=cc("urn:other", "X9")),
     ["code=|X9"]),
    ("sr-priority", SR, same(priority="stat"), same(priority="routine"), ["priority=stat"]),
    ("sr-authored", SR, same(authoredOn="2026-03-04T08:00:00Z"), same(),
     ["authored=2026-03-04", "authored=2026-03"]),
    ("sr-requester", SR, same(requester=ref("Practitioner", "dr-a")), same(requester=ref("Practitioner", "dr-b")),
     ["requester=Practitioner/dr-a", "requester=dr-a"]),
    ("sr-performer", SR, same(performer=[ref("Practitioner", "dr-a")]),
     same(performer=[ref("Practitioner", "dr-b")]), ["performer=Practitioner/dr-a", "performer=dr-a"]),
    ("sr-based-on", SR, same(basedOn=[ref("CarePlan", "cp-a")]), same(basedOn=[ref("CarePlan", "cp-b")]),
     ["based-on=CarePlan/cp-a", "based-on=cp-a"]),
    ("sr-identifier", SR, same(**ident("A-1")), same(**ident("A-2")),
     ["identifier=urn:orders|A-1", "identifier=A-1"]),
    # MedicationRequest
    ("mr-patient", MR, same(), lambda w: {"subject": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("mr-subject", MR, same(), lambda w: {"subject": ref(PAT, w.p2)}, ["subject=Patient/{p1}", "subject={p1}"]),
    ("mr-encounter", MR, lambda w: {"encounter": ref(ENC, w.e1)}, lambda w: {"encounter": ref(ENC, w.e2)},
     ["encounter=Encounter/{e1}", "encounter={e1}"]),
    ("mr-status", MR, same(status="active"), same(status="draft"), ["status=active"]),
    ("mr-intent", MR, same(intent="plan"), same(intent="order"), ["intent=plan"]),
    ("mr-code", MR, same(medicationCodeableConcept=cc(RXNORM, "723")), same(), ["code=723", f"code={RXNORM}|723"]),
    ("mr-authoredon", MR, same(authoredOn="2026-03-04T08:00:00Z"), same(), ["authoredon=2026-03-04"]),
    ("mr-requester", MR, same(requester=ref("Practitioner", "dr-a")), same(requester=ref("Practitioner", "dr-b")),
     ["requester=Practitioner/dr-a", "requester=dr-a"]),
    ("mr-priority", MR, same(priority="urgent"), same(priority="routine"), ["priority=urgent"]),
    ("mr-identifier", MR, same(**ident("M-1")), same(**ident("M-2")), ["identifier=urn:orders|M-1"]),
    # NutritionOrder
    ("no-patient", NO, same(), lambda w: {"patient": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("no-encounter", NO, lambda w: {"encounter": ref(ENC, w.e1)}, lambda w: {"encounter": ref(ENC, w.e2)},
     ["encounter=Encounter/{e1}", "encounter={e1}"]),
    ("no-status", NO, same(status="active"), same(status="draft"), ["status=active"]),
    ("no-datetime", NO, same(dateTime="2026-03-04T08:00:00Z"), same(), ["datetime=2026-03-04"]),
    ("no-identifier", NO, same(**ident("N-1")), same(**ident("N-2")), ["identifier=urn:orders|N-1"]),
    # Task
    ("task-focus", TASK, lambda w: {"focus": f"{SR}/{w.sr1}"}, lambda w: {"focus": f"{SR}/{w.sr2}"},
     ["focus=ServiceRequest/{sr1}", "focus={sr1}"]),
    ("task-patient", TASK, same(), lambda w: {"for": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("task-status", TASK, same(status="in-progress"), same(status="requested"), ["status=in-progress"]),
    ("task-business-status", TASK, same(businessStatus=cc("urn:biz", "scheduled")),
     same(businessStatus=cc("urn:biz", "waiting")), ["business-status=scheduled", "business-status=urn:biz|scheduled"]),
    ("task-owner", TASK, same(owner=ref("Organization", "lab-a")), same(owner=ref("Organization", "lab-b")),
     ["owner=Organization/lab-a", "owner=lab-a"]),
    ("task-based-on", TASK, lambda w: {"basedOn": [ref(SR, w.sr1)]}, lambda w: {"basedOn": [ref(SR, w.sr2)]},
     ["based-on=ServiceRequest/{sr1}", "based-on={sr1}"]),
    ("task-identifier", TASK, same(**ident("T-1")), same(**ident("T-2")), ["identifier=urn:orders|T-1"]),
    # Patient
    ("patient-identifier", PAT, same(**ident("MRN-1", "urn:mrn")), same(**ident("MRN-2", "urn:mrn")),
     ["identifier=urn:mrn|MRN-1", "identifier=MRN-1"]),
    ("patient-birthdate", PAT, same(birthDate="1980-05-06"), same(birthDate="1970-01-01"),
     ["birthdate=1980-05-06", "birthdate=1980", "birthdate=eq1980-05"]),
    ("patient-name", PAT, same(name=[{"family": "Smith", "given": ["Zoë"]}]),
     same(name=[{"family": "Jones", "given": ["Chloe"]}]),
     ["name=Smi", "name=smith", "name=SMITH", "name=zoe", "name=Zoë", "name=ZOE", "name=zo"]),
    # Encounter
    ("encounter-patient", ENC, same(), lambda w: {"subject": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("encounter-status", ENC, same(status="finished"), same(status="in-progress"), ["status=finished"]),
    # AllergyIntolerance
    ("allergy-patient", AI, same(), lambda w: {"patient": ref(PAT, w.p2)}, ["patient={p1}", "patient=Patient/{p1}"]),
    ("allergy-clinical-status", AI, same(clinicalStatus=cc(ALLERGY_CLINICAL, "resolved")), same(),
     ["clinical-status=resolved", f"clinical-status={ALLERGY_CLINICAL}|resolved"]),
    ("allergy-code", AI, same(code=cc(RXNORM, "2670")), same(), ["code=2670", f"code={RXNORM}|2670"]),
    # PlanDefinition
    ("plandefinition-name", PD, same(name="SepsisBundle"), same(name="StrokePathway"),
     ["name=sepsis", "name=SepsisBundle"]),
    ("plandefinition-title", PD, same(title="Sepsis bundle"), same(title="Stroke pathway"),
     ["title=sepsis", "title=Sepsis%20b"]),
    ("plandefinition-status", PD, same(status="draft"), same(status="active"), ["status=draft"]),
    ("plandefinition-identifier", PD, same(**ident("OS-1")), same(**ident("OS-2")), ["identifier=urn:orders|OS-1"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rtype", "match", "nomatch", "queries"),
    [c[1:] for c in PARAM_CASES],
    ids=[c[0] for c in PARAM_CASES],
)
def test_search_parameter_matches_only_the_right_resource(
    client: FlaskClient,
    staff: dict[str, str],
    rtype: str,
    match: Overrides,
    nomatch: Overrides,
    queries: list[str],
) -> None:
    world = World(client, staff)
    build = BASE_BUILDERS[rtype]
    make = order if rtype in ORDER_RESOURCE_TYPES else task_for if rtype == TASK else create
    good = make(client, staff, build(world, match(world)))
    bad = make(client, staff, build(world, nomatch(world)))
    for template in queries:
        query = world.fmt(template)
        result = search(client, staff, rtype, query)
        found = set(matches(result)) - world.created
        assert found == {good}, f"{rtype}?{query}: expected only {good}, not {bad}; got {found}"
        assert result["total"] == len(matches(result))


@pytest.mark.parametrize(
    "query", ["patient={p}", "implicated=ServiceRequest/ord-x", "code=DRG", ""]
)
def test_detected_issue_search_answers_an_empty_searchset(
    client: FlaskClient, staff: dict[str, str], query: str
) -> None:
    pid = create(client, staff, patient())
    result = search(client, staff, "DetectedIssue", query.format(p=pid))
    assert result["total"] == 0
    assert matches(result) == []


# ---------------------------------------------------------------------------- shape
def test_searchset_has_total_and_self_link(client: FlaskClient, staff: dict[str, str]) -> None:
    pid = create(client, staff, patient())
    # the second active order of the same code is a duplicate: activated after acknowledging
    ids = {order(client, staff, service_request(pid, status="active")) for _ in range(2)}
    create(client, staff, service_request(pid))
    result = search(client, staff, "ServiceRequest", f"patient={pid}&status=active")
    assert result["total"] == 2
    assert set(matches(result)) == ids
    self_link = link(result, "self")
    assert self_link is not None
    assert self_link.startswith(f"{BASE}/ServiceRequest?")
    assert f"patient={pid}" in self_link and "status=active" in self_link
    for e in result["entry"]:
        assert e["fullUrl"].endswith(f"{BASE}/ServiceRequest/{e['resource']['id']}")
    assert link(result, "next") is None


# ---------------------------------------------------------------------------- tokens
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("identifier=X1", {"a", "b", "none"}),
        ("identifier=urn:a|X1", {"a"}),
        ("identifier=urn:b|X1", {"b"}),
        ("identifier=|X1", {"none"}),
        ("identifier=urn:a|", {"a"}),
        ("identifier=urn:a|X2", set()),
        ("identifier=urn:a|X1,urn:b|X1", {"a", "b"}),
    ],
)
def test_token_forms_code_system_code_and_bar_code(
    client: FlaskClient, staff: dict[str, str], query: str, expected: set[str]
) -> None:
    pid = create(client, staff, patient())
    made = {
        "a": create(client, staff, service_request(pid, **ident("X1", "urn:a"))),
        "b": create(client, staff, service_request(pid, **ident("X1", "urn:b"))),
        "none": create(client, staff, service_request(pid, **ident("X1", None))),
    }
    found = set(matches(search(client, staff, "ServiceRequest", query)))
    assert found == {made[k] for k in expected}


# ---------------------------------------------------------------------------- dates
AUTHORED = {"a": "2026-01-01T10:00:00Z", "b": "2026-01-02T10:00:00Z", "c": "2026-01-03T10:00:00Z"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("authored=2026-01-02", "b"),
        ("authored=eq2026-01-02", "b"),
        ("authored=ne2026-01-02", "ac"),
        ("authored=gt2026-01-02", "c"),
        ("authored=lt2026-01-02", "a"),
        ("authored=ge2026-01-02", "bc"),
        ("authored=le2026-01-02", "ab"),
        ("authored=eq2026-01-02T10:00:00Z", "b"),
        ("authored=gt2026-01-02T10:00:00Z", "c"),
        ("authored=ge2026-01-02T10:00:00Z", "bc"),
        ("authored=lt2026-01-02T10:00:00Z", "a"),
        ("authored=le2026-01-02T10:00:00Z", "ab"),
        ("authored=2026-01-02T11:00:00%2B01:00", "b"),
        ("authored=2026-01", "abc"),
        ("authored=2025", ""),
        ("authored=ge2026-01-01T10:00:00Z&authored=lt2026-01-03", "ab"),
        ("authored=2026-01-01,2026-01-03", "ac"),
    ],
)
def test_date_prefixes_on_authored(
    client: FlaskClient, staff: dict[str, str], query: str, expected: str
) -> None:
    pid = create(client, staff, patient())
    made = {
        k: create(client, staff, service_request(pid, authoredOn=v)) for k, v in AUTHORED.items()
    }
    found = set(matches(search(client, staff, "ServiceRequest", query)))
    assert found == {made[k] for k in expected}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=gt1980-05-06", "c"),
        ("birthdate=lt1980-05-06", "a"),
        ("birthdate=ge1980-05-06", "bc"),
        ("birthdate=le1980-05-06", "ab"),
        ("birthdate=ne1980-05-06", "ac"),
        ("birthdate=eq1980-05-06", "b"),
        ("birthdate=ge1980&birthdate=lt1990", "b"),
    ],
)
def test_date_prefixes_on_patient_birthdate(
    client: FlaskClient, staff: dict[str, str], query: str, expected: str
) -> None:
    dates = {"a": "1970-01-01", "b": "1980-05-06", "c": "1990-12-31"}
    made = {k: create(client, staff, patient(birthDate=v)) for k, v in dates.items()}
    found = set(matches(search(client, staff, "Patient", query)))
    assert found == {made[k] for k in expected}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("eq", "2"), ("", "2"), ("ne", "13"), ("gt", "3"), ("lt", "1"), ("ge", "23"), ("le", "12")],
)
def test_last_updated_prefixes_with_the_instant_the_server_reported(
    client: FlaskClient, staff: dict[str, str], prefix: str, expected: str
) -> None:
    """`_lastUpdated` compared with the `meta.lastUpdated` a client actually saw."""
    made: dict[str, dict[str, Any]] = {}
    for key in "123":
        r = client.post(f"{BASE}/Patient", json=patient(), headers=staff)
        made[key] = r.get_json()
        time.sleep(0.005)
    instant = made["2"]["meta"]["lastUpdated"]
    query = urlencode({"_lastUpdated": f"{prefix}{instant}"})
    found = set(matches(search(client, staff, "Patient", query)))
    assert found == {made[k]["id"] for k in expected}, instant


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("_lastUpdated=ge2000-01-01", 2),
        ("_lastUpdated=gt2000", 2),
        ("_lastUpdated=lt2000-01-01", 0),
        ("_lastUpdated=gt2999-01-01", 0),
        ("_lastUpdated=ge2000-01-01&_lastUpdated=lt2999-01-01", 2),
    ],
)
def test_last_updated_coarse_ranges(
    client: FlaskClient, staff: dict[str, str], query: str, count: int
) -> None:
    create(client, staff, patient())
    create(client, staff, patient())
    assert search(client, staff, "Patient", query)["total"] == count


# ---------------------------------------------------------------------------- OR / AND / _id
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=draft,active", {"draft", "active"}),
        ("status=draft&status=active", set()),
        ("status=active,revoked&priority=stat", {"active", "revoked"}),
        ("status=draft,revoked&priority=stat", {"revoked"}),
        ("status=draft,active&priority=routine", {"draft"}),
        ("priority=stat,routine&status=revoked", {"revoked"}),
    ],
)
def test_comma_is_or_and_repeated_parameter_is_and(
    client: FlaskClient, staff: dict[str, str], query: str, expected: set[str]
) -> None:
    pid = create(client, staff, patient())
    made = {
        "draft": order(client, staff, service_request(pid, status="draft", priority="routine")),
        "active": order(client, staff, service_request(pid, status="active", priority="stat")),
        "revoked": order(client, staff, service_request(pid, status="revoked", priority="stat")),
    }
    found = set(matches(search(client, staff, "ServiceRequest", query)))
    assert found == {made[k] for k in expected}


def test_search_by_id(client: FlaskClient, staff: dict[str, str]) -> None:
    a, b, c = (create(client, staff, patient()) for _ in range(3))
    assert set(matches(search(client, staff, "Patient", f"_id={a}"))) == {a}
    assert set(matches(search(client, staff, "Patient", f"_id={a},{c}"))) == {a, c}
    assert matches(search(client, staff, "Patient", "_id=pat-nothing")) == []
    assert set(matches(search(client, staff, "Patient", f"_id={b}&birthdate=1970-01-01"))) == {b}


# ---------------------------------------------------------------------------- _sort
@pytest.mark.parametrize(
    ("rtype", "sort", "expected"),
    [
        ("ServiceRequest", "authored", "yzx"),
        ("ServiceRequest", "-authored", "xzy"),
        ("ServiceRequest", "_lastUpdated", "xyz"),
        ("ServiceRequest", "-_lastUpdated", "zyx"),
        ("MedicationRequest", "authoredon", "yzx"),
        ("MedicationRequest", "-authoredon", "xzy"),
    ],
)
def test_sort(
    client: FlaskClient, staff: dict[str, str], rtype: str, sort: str, expected: str
) -> None:
    pid = create(client, staff, patient())
    build = service_request if rtype == "ServiceRequest" else medication_request
    made = {}
    for key, day in (("x", "03"), ("y", "01"), ("z", "02")):
        made[key] = create(client, staff, build(pid, authoredOn=f"2026-01-{day}T10:00:00Z"))
        time.sleep(0.005)
    assert matches(search(client, staff, rtype, f"_sort={sort}")) == [made[k] for k in expected]


def test_sort_by_an_unsupported_key_is_400(client: FlaskClient, staff: dict[str, str]) -> None:
    r = client.get(f"{BASE}/ServiceRequest?_sort=status", headers=staff)
    assert r.status_code == 400
    assert r.get_json()["resourceType"] == "OperationOutcome"


# ---------------------------------------------------------------------------- _count and paging
def test_count_defaults_to_20(client: FlaskClient, staff: dict[str, str]) -> None:
    ids = create_many(client, staff, [patient() for _ in range(21)])
    first = search(client, staff, "Patient")
    assert first["total"] == 21
    assert len(matches(first)) == 20
    nxt = link(first, "next")
    assert nxt is not None
    second = client.get(nxt, headers=staff).get_json()
    assert len(matches(second)) == 1
    assert set(matches(first)) | set(matches(second)) == set(ids)


def test_count_is_capped_at_1000(client: FlaskClient, staff: dict[str, str]) -> None:
    ids = create_many(client, staff, [{"resourceType": "Patient"} for _ in range(500)])
    ids += create_many(client, staff, [{"resourceType": "Patient"} for _ in range(500)])
    ids += create_many(client, staff, [{"resourceType": "Patient"} for _ in range(2)])
    page = search(client, staff, "Patient", "_count=5000")
    assert page["total"] == 1002
    assert len(matches(page)) == 1000
    nxt = link(page, "next")
    assert nxt is not None
    rest = client.get(nxt, headers=staff).get_json()
    assert len(matches(rest)) == 2
    assert set(matches(page)) | set(matches(rest)) == set(ids)


def test_count_zero_and_invalid_count(client: FlaskClient, staff: dict[str, str]) -> None:
    create(client, staff, patient())
    zero = search(client, staff, "Patient", "_count=0")
    assert zero["total"] == 1
    assert matches(zero) == []
    bad = client.get(f"{BASE}/Patient?_count=many", headers=staff)
    assert bad.status_code == 400


def walk(
    client: FlaskClient,
    h: dict[str, str],
    start: str,
    relation: str,
    first: dict[str, Any] | None = None,
) -> list[list[str]]:
    pages, url, body = [], start, first
    for _ in range(50):
        if body is None:
            r = client.get(url, headers=h)
            assert r.status_code == 200, r.get_json()
            body = r.get_json()
        pages.append(matches(body))
        nxt = link(body, relation)
        if nxt is None:
            return pages
        url, body = nxt, None
    raise AssertionError("paging never ended")


AUTHORED_WITH_TIES = ["01", "01", "02", "02", "02", "03", "03", "04"]


@pytest.mark.parametrize(
    "sort", [None, "_id", "authored", "-authored", "_lastUpdated", "-_lastUpdated"]
)
def test_paging_next_to_the_end_and_previous_back_without_repeats_or_gaps(
    client: FlaskClient, staff: dict[str, str], sort: str | None
) -> None:
    pid = create(client, staff, patient())
    bodies = [service_request(pid, authoredOn=f"2026-02-{d}T09:00:00Z") for d in AUTHORED_WITH_TIES]
    ids = create_many(client, staff, bodies)
    authored = dict(zip(ids, AUTHORED_WITH_TIES, strict=True))
    query = "_count=3" + (f"&_sort={sort}" if sort else "")
    first = search(client, staff, "ServiceRequest", query)
    assert first["total"] == 8
    assert link(first, "previous") is None

    forward = walk(client, staff, "", "next", first)
    assert [len(p) for p in forward] == [3, 3, 2]
    flat = [i for p in forward for i in p]
    assert len(flat) == len(set(flat)) == 8
    assert set(flat) == set(ids)
    if sort in ("authored", "-authored"):
        keys = [authored[i] for i in flat]
        assert keys == sorted(keys, reverse=sort.startswith("-"))
    if sort in (None, "_id"):
        assert flat == sorted(flat)

    # the last page, fetched again through the chain, then walked back with `previous`
    last_url = f"{BASE}/ServiceRequest?{query}"
    body = first
    while link(body, "next"):
        last_url = link(body, "next") or ""
        body = client.get(last_url, headers=staff).get_json()
    assert link(body, "next") is None
    backward = walk(client, staff, last_url, "previous", body)
    assert backward == list(reversed(forward))


# ---------------------------------------------------------------------------- _summary / _elements
def test_summary_count_gives_total_and_no_entries(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient())
    for _ in range(3):
        create(client, staff, service_request(pid))
    result = search(client, staff, "ServiceRequest", "_summary=count")
    assert result["total"] == 3
    assert not result.get("entry")


def test_elements_returns_only_the_asked_elements_tagged_subsetted(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient())
    order(client, staff, service_request(pid, status="active"))
    result = search(client, staff, "ServiceRequest", "_elements=status")
    [resource] = [e["resource"] for e in result["entry"]]
    assert set(resource) == {"resourceType", "id", "meta", "status"}
    assert resource["status"] == "active"
    assert SUBSETTED in {t["code"] for t in resource["meta"].get("tag", [])}

    two = search(client, staff, "ServiceRequest", "_elements=status,subject")
    [resource] = [e["resource"] for e in two["entry"]]
    assert set(resource) == {"resourceType", "id", "meta", "status", "subject"}
    # the stored resource is untouched
    full = search(client, staff, "ServiceRequest")
    assert "code" in full["entry"][0]["resource"]
    assert SUBSETTED not in {t["code"] for t in full["entry"][0]["resource"]["meta"].get("tag", [])}


# ---------------------------------------------------------------------------- unknown parameters
def test_unknown_parameter_is_ignored_with_a_warning(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient())
    sr = create(client, staff, service_request(pid))
    result = search(client, staff, "ServiceRequest", "colour=blue")
    assert matches(result) == [sr]
    outcomes = [e for e in result["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    oo = outcomes[0]["resource"]
    assert oo["resourceType"] == "OperationOutcome"
    warnings = [i for i in oo["issue"] if i["severity"] == "warning"]
    assert warnings
    assert "colour" in str(warnings)
    assert result["total"] == 1


def test_unknown_parameter_under_strict_handling_is_400(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    r = client.get(
        f"{BASE}/ServiceRequest?colour=blue", headers={**staff, "Prefer": "handling=strict"}
    )
    assert r.status_code == 400
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "colour" in str(body)
    lenient = client.get(
        f"{BASE}/ServiceRequest?colour=blue", headers={**staff, "Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200


# ---------------------------------------------------------------------------- POST _search
@pytest.mark.parametrize(
    "query",
    ["status=active", "patient={p}&status=draft,active", "_sort=-authored&_count=2", "_id={sr}"],
)
def test_post_search_with_a_form_body_equals_get(
    client: FlaskClient, staff: dict[str, str], query: str
) -> None:
    pid = create(client, staff, patient())
    sr = order(
        client, staff, service_request(pid, status="active", authoredOn="2026-01-05T00:00:00Z")
    )
    order(client, staff, service_request(pid, status="draft", authoredOn="2026-01-04T00:00:00Z"))
    order(client, staff, service_request(pid, status="active", authoredOn="2026-01-03T00:00:00Z"))
    q = query.format(p=pid, sr=sr)
    got = search(client, staff, "ServiceRequest", q)
    r = client.post(
        f"{BASE}/ServiceRequest/_search",
        data=q,
        headers={**staff, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.get_json()
    posted = r.get_json()
    assert posted["type"] == "searchset"
    assert posted["total"] == got["total"]
    assert matches(posted) == matches(got)


def test_get_on_search_path_is_not_a_search(client: FlaskClient, staff: dict[str, str]) -> None:
    r = client.get(f"{BASE}/ServiceRequest/_search", headers=staff)
    assert r.status_code in (404, 405)


# ---------------------------------------------------------------------------- _include / _revinclude
def test_include_service_request_patient(client: FlaskClient, staff: dict[str, str]) -> None:
    p1, p2 = create(client, staff, patient()), create(client, staff, patient())
    srs = {create(client, staff, service_request(p1)) for _ in range(2)}
    create(client, staff, service_request(p2))
    result = search(
        client, staff, "ServiceRequest", f"patient={p1}&_include=ServiceRequest:patient"
    )
    assert set(matches(result)) == srs
    assert included(result) == [("Patient", p1)]
    assert result["total"] == 2


def test_include_medication_request_patient(client: FlaskClient, staff: dict[str, str]) -> None:
    p1, p2 = create(client, staff, patient()), create(client, staff, patient())
    mr1 = create(client, staff, medication_request(p1))
    mr2 = create(client, staff, medication_request(p2))
    result = search(client, staff, "MedicationRequest", "_include=MedicationRequest:patient")
    assert set(matches(result)) == {mr1, mr2}
    assert sorted(included(result)) == sorted([("Patient", p1), ("Patient", p2)])
    only = search(
        client, staff, "MedicationRequest", f"_id={mr2}&_include=MedicationRequest:patient"
    )
    assert included(only) == [("Patient", p2)]


def test_include_task_focus(client: FlaskClient, staff: dict[str, str]) -> None:
    pid = create(client, staff, patient())
    sr1, sr2 = (
        create(client, staff, service_request(pid)),
        create(client, staff, service_request(pid)),
    )
    t1 = task_for(client, staff, task(pid, focus=f"ServiceRequest/{sr1}"))
    task_for(client, staff, task(pid, focus=f"ServiceRequest/{sr2}", status="in-progress"))
    result = search(client, staff, "Task", "status=requested&_include=Task:focus")
    assert matches(result) == [t1]
    assert included(result) == [("ServiceRequest", sr1)]


def test_revinclude_provenance_target_on_service_request(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    pid = create(client, staff, patient())
    active = order_with_status(client, staff, service_request(pid, status="active"))
    sr1 = active["id"]
    create(client, staff, service_request(pid, status="draft"))
    result = search(client, staff, "ServiceRequest", "status=active&_revinclude=Provenance:target")
    assert matches(result) == [sr1]
    inc = [e["resource"] for e in result["entry"] if e["search"]["mode"] == "include"]
    # one Provenance per version of the active order (create, activate), none of the draft's
    versions = int(active["meta"]["versionId"])
    assert versions >= 2
    assert len(inc) == versions
    assert {r["resourceType"] for r in inc} == {"Provenance"}
    assert sorted(r["target"][0]["reference"] for r in inc) == sorted(
        f"ServiceRequest/{sr1}/_history/{v}" for v in range(1, versions + 1)
    )
    assert all(len(r["target"]) == 1 for r in inc)


def test_revinclude_orders_on_patient(client: FlaskClient, staff: dict[str, str]) -> None:
    p1, p2 = create(client, staff, patient()), create(client, staff, patient())
    sr = create(client, staff, service_request(p1))
    mr = create(client, staff, medication_request(p1))
    create(client, staff, service_request(p2))
    result = search(
        client,
        staff,
        "Patient",
        f"_id={p1}&_revinclude=ServiceRequest:patient&_revinclude=MedicationRequest:patient",
    )
    assert matches(result) == [p1]
    assert sorted(included(result)) == sorted([("ServiceRequest", sr), ("MedicationRequest", mr)])


@pytest.mark.parametrize(
    "query",
    [
        "_include=ServiceRequest:status",
        "_include=Patient:link",
        "_revinclude=Task:owner",
        "_include=nonsense",
    ],
)
def test_unsupported_include_is_400(client: FlaskClient, staff: dict[str, str], query: str) -> None:
    r = client.get(f"{BASE}/ServiceRequest?{query}", headers=staff)
    assert r.status_code == 400
    assert r.get_json()["resourceType"] == "OperationOutcome"
