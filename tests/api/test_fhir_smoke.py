from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.fhir_data import patient, service_request


def test_create_read_search(client: FlaskClient, headers: TokenFactory) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    r = client.post("/fhir/R4/Patient", json=patient(), headers=admin)
    assert r.status_code == 201, r.json
    pid = r.json["id"]
    r = client.post("/fhir/R4/ServiceRequest", json=service_request(pid), headers=clin)
    assert r.status_code == 201, r.json
    assert r.headers["ETag"] == 'W/"1"'
    r = client.get(
        f"/fhir/R4/ServiceRequest?patient={pid}&_include=ServiceRequest:patient", headers=clin
    )
    assert r.status_code == 200, r.json
    assert r.json["total"] == 1
    assert {e["search"]["mode"] for e in r.json["entry"]} == {"match", "include"}
