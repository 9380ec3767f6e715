"""The stored facts of an audit event and the AuditEvent served from them (BALP shapes):
the inverse used by revision 0007 rebuilds exactly what `to_fhir` serves, and a document it
cannot rebuild is kept whole rather than changed."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app.domain.audit_events import AuditFacts, from_fhir, to_fhir

AT = datetime(2026, 12, 1, 8, 0, 0, 5000, tzinfo=UTC)
QUERY = AuditFacts(
    "t1",
    "audit-1",
    AT,
    "pat-1",
    "E",
    "0",
    "search-type",
    "api-v1:orders.list",
    "urn:orders-service:token-sub",
    "nurse-1",
    "unknown",
    roles=("ADMIN", "NURSE"),
    client_address="127.0.0.1",
    references=("ServiceRequest/sr-1/_history/1",),
    query="patientId=p1",
    query_type="",
    request_id="r-1",
)


def test_a_query_event_has_the_balp_query_shape() -> None:
    doc = to_fhir(QUERY)
    # The profile the CapabilityStatement lists (BALP's canonical URL, with the dot).
    assert doc["meta"] == {
        "profile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"],
        "versionId": "1",
        "lastUpdated": "2026-12-01T08:00:00.005Z",
    }
    assert doc["recorded"] == "2026-12-01T08:00:00.005Z"
    assert [c["code"] for c in doc["subtype"]] == ["search-type", "api-v1:orders.list"]
    assert [e.get("role", {}).get("code") for e in doc["entity"]] == ["1", "4", "24", None]
    query = doc["entity"][2]
    assert base64.b64decode(query["query"]).decode() == "patientId=p1"
    assert query["description"] == ""
    assert doc["agent"][0]["who"]["identifier"] == {
        "system": "urn:orders-service:token-sub",
        "value": "nurse-1",
    }
    assert [r["coding"][0]["code"] for r in doc["agent"][0]["role"]] == ["ADMIN", "NURSE"]
    assert doc["agent"][1]["network"] == {"address": "127.0.0.1", "type": "2"}
    assert "outcomeDesc" not in doc


def test_every_profile_served_is_one_the_capability_statement_lists() -> None:
    capability = json.loads(
        (Path(__file__).parents[2] / "capability" / "CapabilityStatement.json").read_text()
    )
    (audit,) = [r for r in capability["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    served = {to_fhir(replace(QUERY, action=a))["meta"]["profile"][0] for a in "CURE"}
    assert served == set(audit["supportedProfile"])


def test_from_fhir_inverts_to_fhir() -> None:
    doc = to_fhir(QUERY)
    back = from_fhir("t1", doc, "pat-1")
    assert back == QUERY and back.stored is None
    assert back.details() == {
        "roles": ["ADMIN", "NURSE"],
        "refs": ["ServiceRequest/sr-1/_history/1"],
        "addr": "127.0.0.1",
        "query": "patientId=p1",
        "qtype": "",
        "rid": "r-1",
    }


def test_an_event_stored_with_the_undotted_profile_comes_apart_into_facts() -> None:
    """Events written before the profile URL was corrected (`IHE.BasicAuditQuery`) are this
    server's own shape: the migration keeps their facts, and they are served corrected."""
    doc = to_fhir(QUERY)
    doc["meta"]["profile"] = [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAuditQuery"
    ]
    back = from_fhir("t1", doc, "pat-1")
    assert back == QUERY and back.stored is None
    assert to_fhir(back)["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"
    ]


def test_a_document_it_cannot_rebuild_is_kept_whole() -> None:
    doc = to_fhir(QUERY)
    doc["text"] = {"status": "generated", "div": "<div>written by another tool</div>"}
    doc["meta"]["lastUpdated"] = "2026-12-01T08:00:01.000Z"
    kept = from_fhir("t1", doc, "pat-1")
    assert kept.stored == doc
    assert kept.agent == "nurse-1" and kept.patient_id == "pat-1", "still searchable"
    served = to_fhir(AuditFacts.with_details(kept.details(), **kept.columns()))
    assert served["text"] == doc["text"]
    assert served["meta"]["lastUpdated"] == "2026-12-01T08:00:00.005Z"
    assert {k: v for k, v in served.items() if k != "meta"} == {
        k: v for k, v in doc.items() if k != "meta"
    }


def test_a_document_without_our_shape_keeps_its_json_and_its_searchable_facts() -> None:
    doc = {
        "resourceType": "AuditEvent",
        "id": "audit-x",
        "meta": {"versionId": "1", "lastUpdated": "2026-12-01T09:00:00.000Z"},
        "action": "R",
        "recorded": "2026-12-01T09:00:00Z",
        "outcome": "0",
    }
    kept = from_fhir("t1", doc, None)
    assert kept.stored == doc
    assert kept.recorded == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert (kept.action, kept.outcome, kept.interaction) == ("R", "0", "operation")
