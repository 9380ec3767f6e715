"""The access audit trail: who read or wrote which patient's data, as FHIR AuditEvents.

One AuditEvent per patient per unit of work, in the shapes of the IHE Basic Audit Log
Patterns (BALP: https://profiles.ihe.net/ITI/BALP/), for every read or write of patient data
on every face. BALP records one event per patient (so a patient's accounting of
disclosures is a search on one index column), with:

- `type` rest, `subtype` the FHIR restful-interaction (and, on the legacy and CDS Hooks faces,
  the endpoint as a second coding), `action` C/R/U/E, `recorded`, `outcome` 0/4/8;
- `agent`: the user (token `sub`, issuer, roles; `requestor`), the client (token `azp`
  / `client_id`, network address) and this server;
- `source.site`: the tenant;
- `entity`: the Patient (role 1), each resource read or written (role 4, versioned), the
  query for a search (role 24, base64 of the query string) and the request id.

Faces describe the request (`begin`, `describe`); the unit of work reports what its
repository handed out and wrote (`on_success`, `on_failure`). Writes add their events to the
same transaction; reads hand them to the process's `AuditTrail` buffer
(app/services/audit_trail.py), which writes them in batches off the request path.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from app.auth import Principal
from app.domain.clock import format_instant, utcnow
from app.domain.ids import new_id
from app.store import Repository, StoredResource

if TYPE_CHECKING:
    from app.services.unit_of_work import UnitOfWork  # typing only: it imports this module

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit"
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
SERVER = "orders-service"
#: Never an entity of an event: the trail itself (reading it is not reading patient data,
#: and auditing those reads would grow the trail with every look at it).
NOT_AUDITED = frozenset({"AuditEvent"})
#: An event names at most this many resources; a page of 100 orders with their alerts and
#: Tasks stays one readable event, and the query entity says what was asked.
MAX_ENTITIES = 100
MAX_QUERY_CHARS = 2048
#: BALP profile per kind of event.
PROFILES = {"C": "Create", "U": "Update", "R": "Read", "E": "Query"}


class AuditSink(Protocol):
    def submit(self, records: list[AccessRecord]) -> None: ...


@dataclass
class AccessContext:
    """What the face knows about the request being served; set per request by the face."""

    face: str
    sink: AuditSink | None
    request_id: str | None = None
    client_address: str | None = None
    interaction: str | None = None
    resource_type: str | None = None
    endpoint: str | None = None
    query: str | None = None


@dataclass
class AccessRecord:
    """One AuditEvent to write: everything known at the end of a unit of work, unshaped
    (shaping costs; reads are shaped by the flusher, off the request path)."""

    tenant_id: str
    patient_id: str | None
    principal: Principal
    context: AccessContext
    action: str
    outcome: str
    recorded: datetime
    references: list[str] = field(default_factory=list)
    outcome_desc: str | None = None


_current: ContextVar[AccessContext | None] = ContextVar("access_context", default=None)


def begin(context: AccessContext) -> Token[AccessContext | None]:
    return _current.set(context)


def end(token: Token[AccessContext | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # set in another context: just clear it
        _current.set(None)


def current() -> AccessContext | None:
    return _current.get()


def describe(**fields: str | None) -> None:
    """Name the interaction (`interaction`, `resource_type`, `endpoint`, `query`) of the
    request being served; nothing happens outside a request that a face is auditing."""
    context = _current.get()
    if context is None:
        return
    for key, value in fields.items():
        setattr(context, key, value)


def flush_pending() -> None:
    """Write this process's buffered read events now (before an AuditEvent search, so an
    administrator sees the reads this process has served, including their own)."""
    context = _current.get()
    if context is not None and context.sink is not None:
        flush = getattr(context.sink, "flush", None)
        if flush is not None:
            flush()


# ---------------------------------------------------------------------- unit of work hooks
def on_success(uow: UnitOfWork, kept: BaseException | None = None) -> None:
    """Before commit: writes get their events in the same transaction; reads are buffered.
    `kept` is an error that still commits (new alerts stored by a refused activation): the
    event then records a minor failure (4) with the error's code."""
    context = _current.get()
    if context is None or context.sink is None:
        return
    repo = uow.repo
    written = [r for r in repo.written if r.resource_type not in NOT_AUDITED]
    outcome = "0" if kept is None else "4"
    if written:
        action = "C" if context.interaction == "create" else "U"
        for record in _records(uow.principal, context, written, action, outcome):
            if kept is not None:
                record.outcome_desc = str(getattr(kept, "code", type(kept).__name__))
            _store(repo, record)
        return
    accessed = [r for r in repo.accessed if r.resource_type not in NOT_AUDITED]
    if accessed:
        action = "E" if context.interaction == "search-type" else "R"
        context.sink.submit(_records(uow.principal, context, accessed, action, outcome))


def on_failure(uow: UnitOfWork, error: BaseException) -> None:
    """A unit of work that failed after touching patient data (a write refused by the state
    machine, a CDS hard-stop): recorded as a failed attempt, through the buffer (the
    transaction is rolled back). 4 = minor failure (the client's), 8 = serious (ours)."""
    context = _current.get()
    if context is None or context.sink is None or not hasattr(uow, "repo"):
        return
    touched = [
        r for r in (*uow.repo.written, *uow.repo.accessed) if r.resource_type not in NOT_AUDITED
    ]
    if not touched:
        return
    status = getattr(error, "status", 500)
    outcome = "4" if isinstance(status, int) and status < 500 else "8"
    action = {"create": "C", "search-type": "E"}.get(context.interaction or "", "R")
    if uow.repo.written:
        action = "C" if context.interaction == "create" else "U"
    records = _records(uow.principal, context, touched, action, outcome)
    code = getattr(error, "code", type(error).__name__)
    for record in records:
        record.outcome_desc = str(code)
    context.sink.submit(records)


def _records(
    principal: Principal,
    context: AccessContext,
    resources: Iterable[StoredResource],
    action: str,
    outcome: str,
) -> list[AccessRecord]:
    """One record per patient (BALP), in the order the patients were first touched."""
    by_patient: dict[str | None, list[str]] = {}
    for res in resources:
        refs = by_patient.setdefault(res.patient_id, [])
        ref = res.versioned_reference
        if ref not in refs and len(refs) < MAX_ENTITIES:
            refs.append(ref)
    now = utcnow()
    patients = [p for p in by_patient if p is not None]
    if not patients:
        return []  # no patient's data was touched (order-set templates, say)
    return [
        AccessRecord(
            principal.tenant_id,
            patient,
            principal,
            context,
            action,
            outcome,
            now,
            by_patient[patient],
        )
        for patient in patients
    ]


# ---------------------------------------------------------------------- the resource
def shape(record: AccessRecord) -> dict[str, Any]:
    """The AuditEvent for one record (BALP Create/Update/Read/Query shapes)."""
    ctx, who = record.context, record.principal
    subtype = [{"system": INTERACTION, "code": ctx.interaction or "operation"}]
    if ctx.endpoint:
        subtype.append({"system": ENDPOINT, "code": f"{ctx.face}:{ctx.endpoint}"})
    entities: list[dict[str, Any]] = []
    if record.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{record.patient_id}"},
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
        for ref in record.references
        if ref.split("/", 1)[0] != "Patient" or ref.split("/")[1] != record.patient_id
    ]
    if record.action == "E" and ctx.query:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": ctx.resource_type or "",
                "query": base64.b64encode(ctx.query.encode()).decode("ascii"),
            }
        )
    if ctx.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": ctx.request_id}},
                "type": {"system": BALP_ENTITY, "code": "XrequestId"},
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "meta": {"profile": [f"{BALP}{PROFILES[record.action]}"]},
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
        "subtype": subtype,
        "action": record.action,
        "recorded": format_instant(record.recorded),
        "outcome": record.outcome,
        "agent": _agents(who, ctx),
        "source": {
            "site": record.tenant_id,
            "observer": {"display": SERVER},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    if record.outcome_desc:
        event["outcomeDesc"] = record.outcome_desc
    return event


def _agents(who: Principal, ctx: AccessContext) -> list[dict[str, Any]]:
    user: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
        "who": {
            "identifier": {"system": who.issuer or "urn:orders-service:token-sub", "value": who.sub}
        },
        "requestor": True,
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": r}]} for r in sorted(who.roles)],
    }
    client: dict[str, Any] = {
        "type": {"coding": [{"system": DICOM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": who.client_id or "unknown"}},
        "requestor": False,
    }
    if ctx.client_address:
        client["network"] = {"address": ctx.client_address, "type": "2"}
    server = {
        "type": {"coding": [{"system": DICOM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": SERVER},
        "requestor": False,
    }
    return [user, client, server]


def write_records(repo: Repository, records: Iterable[AccessRecord]) -> int:
    """Store buffered records through a repository of their tenant (the flusher's path)."""
    n = 0
    for record in records:
        _store(repo, record)
        n += 1
    return n


def _store(repo: Repository, record: AccessRecord) -> None:
    """AuditEvents never change (read and search only), so no version history is written:
    one JSON document per event, not two."""
    repo.create("AuditEvent", new_id("AuditEvent"), shape(record), versioned=False)
