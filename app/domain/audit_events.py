"""An access audit event as stored (a few facts) and as served (a FHIR AuditEvent, BALP).

The trail stores each event as the facts that vary (who, which patient, what, when, outcome)
in the narrow `audit_events` table (docs/decisions.md "A narrow table for the audit trail")
and builds the AuditEvent JSON when someone reads it: shaping costs, and events are written
far more often than read. `to_fhir` is the one place the served shape is defined (IHE Basic
Audit Log Patterns: https://profiles.ihe.net/ITI/BALP/); `from_fhir` is its inverse, for the
events stored as whole resources before revision 0007.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from app.domain.clock import format_instant, parse_range

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENDPOINT = "urn:orders-service:endpoint"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ROLE_SYSTEM = "urn:orders-service:role"
CLIENT_SYSTEM = "urn:orders-service:client"
#: The user's identifier system when the token names no issuer.
SUB_SYSTEM = "urn:orders-service:token-sub"
SERVER = "orders-service"
#: BALP profile per kind of event.
PROFILES = {"C": "Create", "U": "Update", "R": "Read", "E": "Query"}
#: Until 2026-12 events named their profile without the dot (`IHE.BasicAuditQuery`), unlike
#: the CapabilityStatement and BALP itself; such a stored event is the same event.
_UNDOTTED = {f"{BALP[:-1]}{name}": f"{BALP}{name}" for name in PROFILES.values()}


@dataclass(frozen=True)
class AuditFacts:
    """One stored event: the columns of `audit_events` (the searchable facts) and `detail`
    (the rest, `details()`): everything `to_fhir` needs, nothing it can derive."""

    tenant_id: str
    id: str
    recorded: datetime
    patient_id: str | None
    action: str  # C | U | R | E
    outcome: str  # 0 | 4 | 8
    interaction: str  # the restful-interaction code (subtype)
    endpoint: str | None  # "face:endpoint", the second subtype coding
    agent_system: str  # the user's identifier: issuer (or SUB_SYSTEM) and sub
    agent: str
    client: str  # the OAuth client id, "unknown" when the token names none
    roles: tuple[str, ...] = ()
    client_address: str | None = None
    references: tuple[str, ...] = ()  # versioned references of the resources touched
    query: str | None = None  # a search's query string (not base64)
    query_type: str | None = None  # the searched type (the query entity's description)
    request_id: str | None = None
    outcome_desc: str | None = None
    #: Set only for an event migrated from a stored resource that `to_fhir` cannot
    #: reproduce: served as it was stored.
    stored: dict[str, Any] | None = field(default=None, compare=False)

    #: The searchable facts: the table's columns besides `detail`, in its order.
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "tenant_id",
        "id",
        "recorded",
        "patient_id",
        "action",
        "outcome",
        "interaction",
        "endpoint",
        "agent_system",
        "agent",
        "client",
    )

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}

    def details(self) -> dict[str, Any]:
        """The `detail` JSON of this event (`details`)."""
        if self.stored is not None:
            return {"stored": self.stored}
        return details(
            self.roles,
            self.references,
            self.client_address,
            self.query,
            self.query_type,
            self.request_id,
            self.outcome_desc,
        )

    @classmethod
    def with_details(cls, detail: dict[str, Any], **columns: Any) -> AuditFacts:
        """The facts of one stored row: its columns and its `detail` JSON."""
        return cls(
            **columns,
            roles=tuple(detail.get("roles", ())),
            client_address=detail.get("addr"),
            references=tuple(detail.get("refs", ())),
            query=detail.get("query"),
            query_type=detail.get("qtype"),
            request_id=detail.get("rid"),
            outcome_desc=detail.get("desc"),
            stored=detail.get("stored"),
        )


def details(
    roles: Iterable[str],
    references: Iterable[str],
    client_address: str | None,
    query: str | None,
    query_type: str | None,
    request_id: str | None,
    outcome_desc: str | None,
) -> dict[str, Any]:
    """The `detail` JSON of a stored event: only what is present, short keys (written per
    event; `AuditFacts.with_details` reads it back). The one definition of its shape: a
    read's row is made with it straight from the record (app/services/audit.py
    `event_row`), without an `AuditFacts` each."""
    detail: dict[str, Any] = {"roles": list(roles), "refs": list(references)}
    if client_address is not None:
        detail["addr"] = client_address
    if query is not None:
        detail["query"] = query
    if query_type is not None:
        detail["qtype"] = query_type
    if request_id is not None:
        detail["rid"] = request_id
    if outcome_desc is not None:
        detail["desc"] = outcome_desc
    return detail


def to_fhir(facts: AuditFacts) -> dict[str, Any]:
    """The AuditEvent as clients get it (BALP Create/Update/Read/Query shapes). It never
    changes, so it has one version, last updated when it was recorded."""
    meta: dict[str, Any] = {"profile": [f"{BALP}{PROFILES[facts.action]}"]}
    if facts.stored is not None:
        meta = {k: v for k, v in (facts.stored.get("meta") or {}).items()}
    meta["versionId"] = "1"
    meta["lastUpdated"] = format_instant(facts.recorded)
    head = {"resourceType": "AuditEvent", "id": facts.id, "meta": meta}
    if facts.stored is not None:
        return head | {k: v for k, v in facts.stored.items() if k not in head}
    return head | _body(facts)


def _body(facts: AuditFacts) -> dict[str, Any]:
    subtype = [{"system": INTERACTION, "code": facts.interaction}]
    if facts.endpoint:
        subtype.append({"system": ENDPOINT, "code": facts.endpoint})
    event: dict[str, Any] = {
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
        "subtype": subtype,
        "action": facts.action,
        "recorded": format_instant(facts.recorded),
        "outcome": facts.outcome,
        "agent": _agents(facts),
        "source": {
            "site": facts.tenant_id,
            "observer": {"display": SERVER},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(facts),
    }
    if facts.outcome_desc:
        event["outcomeDesc"] = facts.outcome_desc
    return event


def _entities(facts: AuditFacts) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if facts.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{facts.patient_id}"},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    entities += [
        {
            "what": {"reference": ref},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        }
        for ref in facts.references
    ]
    if facts.action == "E" and facts.query:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": facts.query_type or "",
                "query": base64.b64encode(facts.query.encode()).decode("ascii"),
            }
        )
    if facts.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": facts.request_id}},
                "type": {"system": BALP_ENTITY, "code": "XrequestId"},
            }
        )
    return entities


def _agents(facts: AuditFacts) -> list[dict[str, Any]]:
    user: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
        "who": {"identifier": {"system": facts.agent_system, "value": facts.agent}},
        "requestor": True,
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": r}]} for r in facts.roles],
    }
    client: dict[str, Any] = {
        "type": {"coding": [{"system": DICOM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": facts.client}},
        "requestor": False,
    }
    if facts.client_address:
        client["network"] = {"address": facts.client_address, "type": "2"}
    server = {
        "type": {"coding": [{"system": DICOM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": SERVER},
        "requestor": False,
    }
    return [user, client, server]


# ---------------------------------------------------------------------- from a resource
def from_fhir(tenant_id: str, doc: dict[str, Any], patient_id: str | None) -> AuditFacts:
    """The facts of an AuditEvent stored as a whole resource (before revision 0007).

    Events this server wrote come apart into facts that `to_fhir` builds back identically
    (checked here, `meta.lastUpdated` aside: it becomes `recorded`); any other document
    keeps its JSON (`stored`) with the facts searches need."""
    facts = _parsed(tenant_id, doc, patient_id)
    if facts is not None and _same(to_fhir(facts), doc):
        return facts
    recorded = parse_range(str(doc.get("recorded") or doc["meta"]["lastUpdated"]))[0]
    kept = AuditFacts(
        tenant_id,
        str(doc["id"]),
        recorded,
        patient_id,
        str(doc.get("action") or "R")[:1],
        str(doc.get("outcome") or "0")[:1],
        "operation",
        None,
        SUB_SYSTEM,
        "unknown",
        "unknown",
    )
    return replace(facts or kept, stored=doc)


def _same(built: dict[str, Any], doc: dict[str, Any]) -> bool:
    def without_updated(d: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (d.get("meta") or {}).items() if k != "lastUpdated"}
        if isinstance(meta.get("profile"), list):
            meta["profile"] = [_UNDOTTED.get(p, p) for p in meta["profile"]]
        return {**d, "meta": meta}

    return without_updated(built) == without_updated(doc)


def _parsed(tenant_id: str, doc: dict[str, Any], patient_id: str | None) -> AuditFacts | None:
    """`to_fhir`'s inverse for the shapes it writes; None for anything else."""
    try:
        codes = {c["system"]: c["code"] for c in doc["subtype"]}
        user, client = doc["agent"][0], doc["agent"][1]
        refs: list[str] = []
        query = query_type = request_id = None
        for entity in doc["entity"]:
            role = entity.get("role", {}).get("code")
            if role == "4":
                refs.append(entity["what"]["reference"])
            elif role == "24":
                query = base64.b64decode(entity["query"]).decode()
                query_type = entity.get("description", "")
            elif entity.get("type", {}).get("code") == "XrequestId":
                request_id = entity["what"]["identifier"]["value"]
        return AuditFacts(
            tenant_id,
            str(doc["id"]),
            parse_range(doc["recorded"])[0],
            patient_id,
            doc["action"],
            doc["outcome"],
            codes[INTERACTION],
            codes.get(ENDPOINT),
            user["who"]["identifier"]["system"],
            user["who"]["identifier"]["value"],
            client["who"]["identifier"]["value"],
            roles=tuple(r["coding"][0]["code"] for r in user.get("role", [])),
            client_address=(client.get("network") or {}).get("address"),
            references=tuple(refs),
            query=query,
            query_type=query_type,
            request_id=request_id,
            outcome_desc=doc.get("outcomeDesc"),
        )
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return None
