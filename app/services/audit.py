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
  query for a search (role 24, base64 of the query string) and the request id. A search
  that names its query records the query and the patient, not the results: BALP's Query
  and PatientQuery say "the number of results and the content of the results are not
  recorded" (docs/decisions.md "Search events record the query, not the results").

Faces describe the request (`begin`, `describe`); the unit of work reports what its
repository handed out and wrote (`on_success`, `on_failure`). Writes add their events to the
same transaction; reads hand them to the process's `AuditTrail` buffer
(app/services/audit_trail.py), which writes them in batches off the request path. The trail
stores each event as one row of its own narrow table (`event_row`, the one definition for
reads and writes alike; the JSON above is built when an event is read,
app/domain/audit_events.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from app.auth import Principal
from app.domain.audit_events import SUB_SYSTEM, details
from app.domain.clock import utcnow
from app.domain.ids import new_ids
from app.store import Repository, StoredResource

if TYPE_CHECKING:
    from app.services.unit_of_work import UnitOfWork  # typing only: it imports this module

#: Never an entity of an event: the trail itself (reading it is not reading patient data,
#: and auditing those reads would grow the trail with every look at it).
NOT_AUDITED = frozenset({"AuditEvent"})
#: An event names at most this many resources; a page of 100 orders with their alerts and
#: Tasks stays one readable event, and the query entity says what was asked.
MAX_ENTITIES = 100
MAX_QUERY_CHARS = 2048


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
    (`event_row` makes it the row it is stored as)."""

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
        records = _records(uow.principal, context, written, action, outcome)
        for record in records:
            if kept is not None:
                record.outcome_desc = str(getattr(kept, "code", type(kept).__name__))
        rows = [event_row(record) for record in records]
        repo.defer_audit_rows(new_ids("AuditEvent", len(rows)), rows)
        return
    accessed = [r for r in repo.accessed if r.resource_type not in NOT_AUDITED]
    if accessed:
        action = "E" if context.interaction == "search-type" else "R"
        context.sink.submit(_records(uow.principal, context, accessed, action, outcome))


def queried(context: AccessContext, action: str) -> bool:
    """Whether an event records its query instead of the resources it touched (BALP Query:
    a search's results are not recorded). A search without a query string (an
    administrator's tenant-wide list) names what it returned, so that no event says nothing
    about what was read."""
    return action == "E" and bool(context.query)


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
    """One record per patient (BALP), in the order the patients were first touched; with the
    resources touched unless the event records a query instead (`queried`)."""
    by_patient: dict[str | None, list[str]] = {}
    named = not queried(context, action)
    for res in resources:
        refs = by_patient.setdefault(res.patient_id, [])
        if not named:
            continue
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


# ---------------------------------------------------------------------- the stored facts
#: One event as the trail buffers and stores it: the columns of `audit_events` in order
#: without `id` (named when its batch is written, `new_ids`), `detail` as JSON text
#: (app/store/audit_log.py `ROW_COLUMNS`). Only strings, None and one datetime: built on the
#: request path while the record is fresh, it holds no reference to the request's objects,
#: and the garbage collector stops tracking it (a second's reads wait in the buffer).
EventRow = tuple[Any, ...]


def event_row(record: AccessRecord) -> EventRow:
    """What the trail stores of one record (the AuditEvent JSON is built when it is read,
    app/domain/audit_events.py `to_fhir`)."""
    ctx, who = record.context, record.principal
    searched = queried(ctx, record.action)
    own = f"Patient/{record.patient_id}/"
    detail = details(
        sorted(who.roles),
        [ref for ref in record.references if not ref.startswith(own)],
        ctx.client_address,
        ctx.query if searched else None,
        (ctx.resource_type or "") if searched else None,
        ctx.request_id,
        record.outcome_desc or None,
    )
    doc = orjson.dumps(detail).decode()
    if "\\u0000" in doc:  # a NUL, which no PostgreSQL text or jsonb holds
        doc = doc.replace("\\u0000", "\\ufffd")
    return (
        record.tenant_id,
        record.recorded,
        record.patient_id,
        record.action,
        record.outcome,
        ctx.interaction or "operation",
        f"{ctx.face}:{ctx.endpoint}" if ctx.endpoint else None,
        who.issuer or SUB_SYSTEM,
        who.sub,
        who.client_id or "unknown",
        doc,
    )


def write_rows(repo: Repository, rows: list[EventRow]) -> int:
    """Append buffered rows through a repository of their tenant (the flusher's path: one
    bulk write, `COPY` on PostgreSQL), their ids named in one go."""
    return repo.append_audit_rows(new_ids("AuditEvent", len(rows)), rows)
