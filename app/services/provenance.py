"""A Provenance for every write: who (token `sub`), when, what (versioned target), why.

See: https://hl7.org/fhir/R4/provenance.html — `target` points at the exact version written.
"""

from __future__ import annotations

from typing import Any

from app.auth import Principal
from app.domain.clock import format_instant
from app.domain.ids import new_id
from app.store import Repository, StoredResource

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def record(
    repo: Repository,
    principal: Principal,
    target: StoredResource,
    *,
    activity: str,
    reason: str | None = None,
    activity_system: str = DATA_OPERATION,
) -> StoredResource:
    """Store a Provenance for `target`; `activity` is a v3-DataOperation code (CREATE, UPDATE)."""
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": target.versioned_reference}],
        "recorded": format_instant(target.last_updated),
        "activity": {"coding": [{"system": activity_system, "code": activity}]},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                "who": {
                    "identifier": {
                        "system": principal.issuer or "urn:orders-service:token-sub",
                        "value": principal.sub,
                    },
                    "display": principal.sub,
                },
            }
        ],
    }
    if reason:
        prov["reason"] = [{"text": reason}]
    return repo.create("Provenance", new_id("Provenance"), prov, patient_id=target.patient_id)


def write_new(
    repo: Repository,
    principal: Principal,
    resource_type: str,
    rid: str,
    doc: dict[str, Any],
    reason: str | None,
) -> StoredResource:
    """Create a resource and its Provenance: every write has one."""
    stored = repo.create(resource_type, rid, doc)
    record(repo, principal, stored, activity="CREATE", reason=reason)
    return stored


def write(
    repo: Repository,
    principal: Principal,
    resource_type: str,
    rid: str,
    doc: dict[str, Any],
    expected: int,
    reason: str | None,
) -> StoredResource:
    """Compare-and-set update of a resource, and its Provenance."""
    stored = repo.update(resource_type, rid, doc, expected)
    record(repo, principal, stored, activity="UPDATE", reason=reason)
    return stored
