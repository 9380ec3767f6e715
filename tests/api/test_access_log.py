"""The access line of the real app (issue 15 item 4): route template, face, tenant, subject,
latency and outcome on one line; never the token, the query string or the body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.legacy_data import LegacyApi, lab


def _access(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("logger") == "app.access"]


def test_the_access_line_names_the_route_subject_and_outcome_and_nothing_identifying(
    client: FlaskClient, headers: TokenFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid, notes="Jane Q. Patient, penicillin allergy"))
    doc = api.as_role("CLINICIAN", sub="dr-log")
    capsys.readouterr()
    assert client.get(f"/api/v1/orders?patientId={pid}", headers=doc).status_code == 200
    missing = client.get("/fhir/R4/MedicationRequest/ord-nope", headers=doc)
    assert missing.status_code == 404
    out = capsys.readouterr().out
    listing, not_found = _access(out)[-2:]
    assert listing == {
        **listing,
        "route": "/api/v1/orders",
        "face": "api-v1",
        "status": 200,
        "outcome": "ok",
        "tenant": doc["X-Tenant-ID"],
        "subject": "dr-log",
    }
    assert listing["duration_ms"] >= 0
    assert not_found == {
        **not_found,
        "route": "/fhir/R4/MedicationRequest/{id}",
        "face": "fhir",
        "status": 404,
        "outcome": "RESOURCE_NOT_FOUND",
    }
    token = doc["Authorization"].split()[1]
    for secret in (token, pid, "patientId", "Jane Q. Patient", order["orderId"]):
        assert secret not in out, secret
