"""Issue 11, hardening: response headers (15), crafted input that used to be a 500 (13, 19,
20). Every refusal is a 4xx in the face's own error shape; nothing is half-written."""

from __future__ import annotations

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
