"""Issue 11, hardening: response headers (15), crafted input that used to be a 500 (13, 19,
20). Every refusal is a 4xx in the face's own error shape; nothing is half-written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import patient, service_request


def _codes(outcome: Any) -> list[str]:
    return [
        c.get("code")
        for i in outcome.get("issue", [])
        for c in (i.get("details") or {}).get("coding", [])
    ]


@pytest.fixture
def admin(headers: TokenFactory) -> dict[str, str]:
    return headers("ADMIN")


@pytest.fixture
def doc(headers: TokenFactory) -> dict[str, str]:
    return headers("CLINICIAN")


@pytest.fixture
def order(client: FlaskClient, admin: dict[str, str], doc: dict[str, str]) -> dict[str, Any]:
    pat = client.post("/fhir/R4/Patient", json=patient(), headers=admin)
    assert pat.status_code == 201, pat.json
    created = client.post(
        "/fhir/R4/ServiceRequest", json=service_request(pat.json["id"]), headers=doc
    )
    assert created.status_code == 201, created.json
    return dict(created.json)


# ---------------------------------------------------------------- item 15
def _assert_private(resp: Any, what: str) -> None:
    assert resp.headers.get("Cache-Control") == "no-store", (what, dict(resp.headers))
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", (what, dict(resp.headers))


def test_patient_data_responses_are_not_stored_nor_sniffed(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any]
) -> None:
    rid = order["id"]
    pid = order["subject"]["reference"].split("/")[1]
    legacy = {**doc, "Content-Type": "application/json"}
    responses = {
        "fhir read": client.get(f"/fhir/R4/ServiceRequest/{rid}", headers=doc),
        "fhir vread": client.get(f"/fhir/R4/ServiceRequest/{rid}/_history/1", headers=doc),
        "fhir search": client.get(f"/fhir/R4/ServiceRequest?patient={pid}", headers=doc),
        "fhir 404": client.get("/fhir/R4/ServiceRequest/nope", headers=doc),
        "fhir 401": client.get(f"/fhir/R4/ServiceRequest/{rid}"),
        "fhir create": client.post(
            "/fhir/R4/ServiceRequest", json=service_request(pid), headers=doc
        ),
        "legacy get": client.get(f"/api/v1/orders/{rid.replace('-', '_', 1)}", headers=legacy),
        "legacy list": client.get(f"/v1/orders?patientId={pid}", headers=legacy),
        "legacy 400": client.get("/api/v1/orders", headers=legacy),
        "legacy 404 route": client.get("/api/v1/nothing-here", headers=legacy),
        "cds discovery": client.get("/cds-services", headers=doc),
        "cds 401": client.get("/cds-services"),
    }
    for what, resp in responses.items():
        assert resp.status_code < 500, (what, resp.status_code)
        _assert_private(resp, what)


@pytest.mark.parametrize("path", ["/fhir/R4/metadata", "/api/v1/openapi.json", "/v1/openapi.json"])
def test_documents_about_the_server_may_be_cached(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.headers.get("Cache-Control") != "no-store"


# ---------------------------------------------------------------- items 13, 19, 20
def _cursor(*parts: Any) -> str:
    import base64

    import orjson

    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def _fhir_400(resp: Any, what: str) -> None:
    assert resp.status_code == 400, (what, resp.status_code, resp.get_data(as_text=True)[:300])
    body = resp.get_json()
    assert body["resourceType"] == "OperationOutcome", (what, body)


def _legacy_400(resp: Any, what: str) -> None:
    assert resp.status_code == 400, (what, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.get_json()["error"]["code"] == "VALIDATION_ERROR", (what, resp.get_json())


@pytest.mark.parametrize("digit", ["²", "٣", "３"])  # noqa: RUF001 - non-ASCII digits on purpose
def test_unicode_digits_are_400_everywhere_a_number_comes_in(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any], digit: str
) -> None:
    """Item 19: `str.isdigit()` takes `²` and `int()` then fails; ASCII digits only."""
    rid = order["id"]
    base = f"/fhir/R4/ServiceRequest/{rid}"
    _fhir_400(client.get(f"/fhir/R4/ServiceRequest?_count={digit}", headers=doc), "_count")
    _fhir_400(client.get(f"{base}/_history?_count={digit}", headers=doc), "history _count")
    vread = client.get(f"{base}/_history/{digit}", headers=doc)
    assert vread.status_code == 404, vread.get_data(as_text=True)
    changed = {**order, "note": [{"text": "changed"}]}
    put = client.put(base, json=changed, headers={**doc, "If-Match": f'W/"{digit}"'})
    _fhir_400(put, "If-Match")
    entry = {
        "resource": changed,
        "request": {"method": "PUT", "url": f"ServiceRequest/{rid}", "ifMatch": f'W/"{digit}"'},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    _fhir_400(client.post("/fhir/R4", json=bundle, headers=doc), "Bundle ifMatch")
    pid = order["subject"]["reference"].split("/")[1].replace("-", "_", 1)
    legacy = {**doc, "Content-Type": "application/json"}
    for param in ("page", "pageSize"):
        resp = client.get(f"/api/v1/orders?patientId={pid}&{param}={digit}", headers=legacy)
        _legacy_400(resp, param)
    assert client.get(base, headers=doc).get_json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("kind", [["batch"], {}, 1, None, True])
def test_bundle_type_that_is_not_a_string_is_400(
    client: FlaskClient, doc: dict[str, str], kind: Any
) -> None:
    """Item 20."""
    bundle = {"resourceType": "Bundle", "type": kind, "entry": []}
    _fhir_400(client.post("/fhir/R4", json=bundle, headers=doc), repr(kind))


@pytest.mark.parametrize("field", ["method", "url", "ifMatch", "ifNoneExist"])
def test_bundle_entry_request_fields_that_are_not_strings_are_400(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any], field: str
) -> None:
    request: dict[str, Any] = {"method": "POST", "url": "ServiceRequest", field: 3}
    entry = {"resource": service_request("nobody"), "request": request}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    _fhir_400(client.post("/fhir/R4", json=bundle, headers=doc), field)


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("_id", _cursor("next", 5, None, "x")),
        ("_id", _cursor("next", "_id", {"a": 1}, "x")),
        ("_id", _cursor("next", "_id", None, ["x"])),
        ("_lastUpdated", _cursor("next", "_lastUpdated", "not-a-date", "x")),
        ("_lastUpdated", _cursor("next", "_lastUpdated", None, "x")),
        ("_lastUpdated", _cursor("next", "_lastUpdated", 12, "x")),
        ("_lastUpdated", _cursor("next", "_lastUpdated", "2026-01-01T00:00:00", "x")),
        ("_lastUpdated", _cursor("next", "_id", None, "x")),
        ("_id", _cursor("next", "_id", None, "bad id with spaces")),
        ("_id", _cursor({"a": 1})),
        ("_id", "%%%"),
    ],
)
def test_crafted_cursor_is_400(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any], sort: str, cursor: str
) -> None:
    """Item 13: a cursor is client input."""
    resp = client.get(
        "/fhir/R4/ServiceRequest", query_string={"_sort": sort, "_cursor": cursor}, headers=doc
    )
    _fhir_400(resp, cursor)


def test_a_cursor_the_server_returned_still_pages(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any]
) -> None:
    pid = order["subject"]["reference"].split("/")[1]
    client.post("/fhir/R4/ServiceRequest", json=service_request(pid), headers=doc)
    for sort in ("_id", "-_lastUpdated"):
        first = client.get(f"/fhir/R4/ServiceRequest?_count=1&_sort={sort}", headers=doc).json
        nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
        second = client.get(nxt.split("/fhir/R4", 1)[1].join(["/fhir/R4", ""]), headers=doc)
        assert second.status_code == 200, second.json
        assert second.json["entry"][0]["resource"]["id"] != first["entry"][0]["resource"]["id"]


@pytest.mark.parametrize(
    "header",
    [
        '{"reason": "because"}',
        '{"reason": [{"text": 5}]}',
        '{"reason": [{"coding": "x"}]}',
        '{"reason": [{"coding": [{"code": 5}]}]}',
        '{"reason": [{"coding": [5]}]}',
        '{"reason": ["x"]}',
        '["not", "a", "resource"]',
        '{"resourceType": "Patient"}',
        "not json",
    ],
)
def test_malformed_x_provenance_is_400_and_writes_nothing(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any], header: str
) -> None:
    """Item 13."""
    pid = order["subject"]["reference"].split("/")[1]
    before = client.get("/fhir/R4/ServiceRequest?_summary=count", headers=doc).json["total"]
    resp = client.post(
        "/fhir/R4/ServiceRequest",
        json=service_request(pid),
        headers={**doc, "X-Provenance": header},
    )
    _fhir_400(resp, header)
    after = client.get("/fhir/R4/ServiceRequest?_summary=count", headers=doc).json["total"]
    assert after == before


def test_well_formed_x_provenance_is_still_recorded(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any]
) -> None:
    pid = order["subject"]["reference"].split("/")[1]
    header = '{"resourceType": "Provenance", "reason": [{"coding": [{"code": "TREAT"}]}]}'
    resp = client.post(
        "/fhir/R4/ServiceRequest",
        json=service_request(pid),
        headers={**doc, "X-Provenance": header},
    )
    assert resp.status_code == 201, resp.json


def _nested(depth: int) -> str:
    """An extension nested `depth` deep, as JSON text (json.dumps itself would recurse)."""
    return '{"url": "urn:x", "extension": [' * depth + '{"url": "urn:x"}' + "]}" * depth


def _with_extension(resource: dict[str, Any], depth: int) -> bytes:
    text = json.dumps(resource)
    return (text[:-1] + ', "extension": [' + _nested(depth) + "]}").encode()


@pytest.mark.parametrize("depth", [70, 300, 900])
def test_deeply_nested_bodies_are_400_on_every_face(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any], depth: int
) -> None:
    """Item 13: JSON deeper than 64 levels is refused before anything walks it."""
    pid = order["subject"]["reference"].split("/")[1]
    before = client.get("/fhir/R4/ServiceRequest?_summary=count", headers=doc).json["total"]
    body = _with_extension(service_request(pid), depth)
    resp = client.post("/fhir/R4/ServiceRequest", data=body, headers=doc)
    _fhir_400(resp, "fhir")
    assert "64" in resp.get_data(as_text=True)
    bundle = '{"resourceType": "Bundle", "type": "batch", "entry": [' + _nested(depth) + "]}"
    _fhir_400(client.post("/fhir/R4", data=bundle, headers=doc), "bundle")
    legacy = {**doc, "Content-Type": "application/json"}
    _legacy_400(client.post("/api/v1/orders", data=_nested(depth), headers=legacy), "legacy")
    cds = client.post("/cds-services/order-select-checks", data=_nested(depth), headers=legacy)
    assert cds.status_code == 400, cds.get_data(as_text=True)[:300]
    after = client.get("/fhir/R4/ServiceRequest?_summary=count", headers=doc).json["total"]
    assert after == before


def test_ordinary_nesting_is_accepted(
    client: FlaskClient, doc: dict[str, str], order: dict[str, Any]
) -> None:
    pid = order["subject"]["reference"].split("/")[1]
    body = _with_extension(service_request(pid), 20)
    resp = client.post("/fhir/R4/ServiceRequest", data=body, headers=doc)
    assert resp.status_code == 201, resp.json
