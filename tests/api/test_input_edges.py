"""Hostile input found by fuzzing: never a 500, always the face's error shape (both backends)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import patient


def test_nul_character_in_a_fhir_resource_is_400_and_nothing_stored(
    client: FlaskClient, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")
    r = client.post("/fhir/R4/Patient", json=patient(name=[{"family": "a\x00b"}]), headers=admin)
    assert r.status_code == 400, r.json
    assert r.json["issue"][0]["expression"] == ["Patient.name[0].family"]
    assert client.get("/fhir/R4/Patient?_summary=count", headers=admin).json["total"] == 0


def test_nul_character_in_a_search_is_400(client: FlaskClient, headers: TokenFactory) -> None:
    r = client.get("/fhir/R4/Patient?name=a%00b", headers=headers("CLINICIAN"))
    assert r.status_code == 400
    assert r.json["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "query",
    [
        "from=9999-12-31&to=9999-12-31",
        "to=9999-12-31T23:59:59-01:00",
        "from=0001-01-01T00:00:00%2B01:00",
        "page=18446744073709551616",
        "patientId=pat_1%0A",
    ],
)
def test_legacy_list_edges_are_400(client: FlaskClient, headers: TokenFactory, query: str) -> None:
    sep = "&" if "patientId" not in query else ""
    base = "/api/v1/orders?" + ("" if "patientId" in query else "patientId=pat_1" + sep)
    r = client.get(base + query, headers=headers("CLINICIAN"))
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "VALIDATION_ERROR"


def test_fhir_search_date_at_the_calendar_edge_is_400(
    client: FlaskClient, headers: TokenFactory
) -> None:
    r = client.get(
        "/fhir/R4/Patient?birthdate=le9999-12-31T23:59:59-01:00", headers=headers("CLINICIAN")
    )
    assert r.status_code == 400, r.json


@pytest.mark.parametrize("path", ["/api/v1/orders/x/activate", "/fhir/R4/metadata"])
def test_405_names_the_allowed_methods(
    client: FlaskClient, headers: TokenFactory, path: str
) -> None:
    r = client.delete(path, headers=headers("CLINICIAN"))
    assert r.status_code == 405
    assert "Allow" in r.headers or r.json["resourceType"] == "OperationOutcome"
    if path.startswith("/api"):
        assert r.headers["Allow"] == "OPTIONS, POST"
        assert r.json["error"]["code"] == "METHOD_NOT_ALLOWED"
