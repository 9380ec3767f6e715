"""Creating an order: the patient and encounter checks, the client mutation key, the CDS
order-select gate (a hard-stop stores nothing), and the draft with its alerts.

The lifecycle that follows (transitions, activation, acknowledgement, PUT) is in
app/services/orders.py, whose `OrderService` builds on this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app import metrics
from app.cds.context import Hook, OrderContext
from app.cds.engine import CdsEngine
from app.domain import access
from app.domain.clock import utcnow
from app.domain.fhir_models import validate_resource
from app.domain.ids import new_id
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import (
    CdsHardStop,
    DuplicateMutation,
    EncounterInactive,
    EncounterNotFound,
    Issue,
    PatientDeceased,
    PatientNotFound,
    ValidationFailed,
)
from app.services import alerts as alert_store
from app.services import provenance
from app.services.cds_context import ContextBuilder
from app.services.resources import check_references, find_all
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.extract import parse_reference

#: `conditional_keys.res_type` for client mutation keys (one namespace for all order types).
MUTATION_KEYS = "client-mutation"
ACTIVE_ENCOUNTER = frozenset({"in-progress", "arrived", "triaged", "onleave"})


@dataclass
class OrderResult:
    order: StoredResource
    alerts: list[dict[str, Any]] = field(default_factory=list)  # DetectedIssue JSON
    task: StoredResource | None = None
    #: True when a client mutation key matched an order created earlier (nothing new stored).
    replayed: bool = False


@dataclass(frozen=True)
class MutationKey:
    """A client mutation key as stored with the order (see app/services/idempotency.py)."""

    key: str
    payload_hash: str


def patient_of(order: dict[str, Any]) -> str | None:
    ref = (order.get("subject") or order.get("patient") or {}).get("reference", "")
    parsed = parse_reference(ref) if isinstance(ref, str) else None
    return parsed[1] if parsed and parsed[0] == "Patient" else None


class OrderCreation:
    def __init__(self, uow: UnitOfWork, engine: CdsEngine) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.principal = uow.principal
        self.engine = engine

    # ------------------------------------------------------------------ writes
    def _write_new(
        self, resource_type: str, rid: str, doc: dict[str, Any], *, reason: str | None
    ) -> StoredResource:
        stored = provenance.write_new(self.repo, self.principal, resource_type, rid, doc, reason)
        self.uow.outbox.record(None, stored)
        return stored

    def _write(
        self,
        resource_type: str,
        rid: str,
        doc: dict[str, Any],
        expected: int,
        *,
        reason: str | None,
    ) -> StoredResource:
        before = self.repo.last_seen(resource_type, rid)
        stored = provenance.write(
            self.repo, self.principal, resource_type, rid, doc, expected, reason
        )
        self.uow.outbox.record(before.content.get("status") if before else None, stored)
        return stored

    # ------------------------------------------------------------------ create
    def create(
        self,
        resource_type: str,
        body: Any,
        *,
        rid: str | None = None,
        reason: str | None = None,
        mutation: MutationKey | None = None,
        validated: bool = False,
    ) -> OrderResult:
        """Validate, check patient and encounter, run order-select CDS, then store.

        `validated`: the caller already validated `body` (a PUT that creates), or built it
        from input it validated (the legacy face maps a schema-checked payload): client input
        is validated once, what the server built is not validated again (issue 13).

        A hard-stop stores nothing (422 CDS_HARD_STOP with the alerts in details); other
        alerts are stored as DetectedIssues linked to the draft. With a client mutation key,
        the key is claimed in the same transaction: a key already taken by the same payload
        returns that order (`replayed`), by another payload is 409 DUPLICATE_MUTATION.
        """
        access.require(self.principal, access.write_action(resource_type))
        order = body if validated else validate_resource(resource_type, body)
        if order.get("status") != "draft":
            msg = "Orders are created as draft; activate them with $activate"
            raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.status")])
        rid = rid or new_id(resource_type)
        if mutation is not None:
            earlier = self._claim_mutation(mutation, rid)
            if earlier is not None:
                return earlier
        patient_id, checked = self._check_patient_and_encounter(resource_type, order)
        check_references(self.uow, resource_type, order, known=checked)
        order = {**order, "id": rid}
        found = self.engine.evaluate(self._context(order, patient_id, "order-select"))
        metrics.cds_alerts("order-select", found)
        blocking = [a for a in found if a.level == "hard-stop"]
        if blocking:
            raise CdsHardStop(
                "A hard-stop alert prevents this order",
                details=[
                    {"ruleId": a.rule_id, "level": a.level, "message": a.message} for a in found
                ],
                issues=[
                    Issue(f"{a.rule_id}: {a.message}", severity="error", code="business-rule")
                    for a in blocking
                ],
            )
        now = utcnow()
        issues = [
            alert_store.build(a, patient_id=patient_id, order_ref=f"{resource_type}/{rid}", now=now)
            for a in found
        ]
        if issues and resource_type == "MedicationRequest":
            order["detectedIssue"] = [{"reference": f"DetectedIssue/{i['id']}"} for i in issues]
        stored = self._write_new(resource_type, rid, order, reason=reason)
        for issue in issues:
            self._write_new(
                "DetectedIssue", issue["id"], issue, reason="order-select decision support"
            )
        return OrderResult(stored, issues)

    def _alerts_of(self, order: StoredResource) -> list[dict[str, Any]]:
        return [
            issue
            for issue in find_all(self.uow, "DetectedIssue", [("implicated", order.reference)])
            if (issue.get("implicated") or [{}])[0].get("reference") == order.reference
        ]

    def _claim_mutation(self, mutation: MutationKey, rid: str) -> OrderResult | None:
        if self.repo.claim_conditional_key(MUTATION_KEYS, mutation.key, rid, mutation.payload_hash):
            return None
        owner = self.repo.key_owner(MUTATION_KEYS, mutation.key)
        if owner is None or owner[1] != mutation.payload_hash:
            raise DuplicateMutation("clientMutationId was already used with a different payload")
        existing = self.repo.read_any(ORDER_RESOURCE_TYPES, owner[0])
        if existing is None:  # pragma: no cover - the key row is written with its order
            raise DuplicateMutation("clientMutationId belongs to an order that is not visible")
        metrics.idempotent_replay("stored-key")
        return OrderResult(existing, self._alerts_of(existing), replayed=True)

    def _check_patient_and_encounter(
        self, resource_type: str, order: dict[str, Any]
    ) -> tuple[str, set[tuple[str, str]]]:
        """The order's patient id, and the (type, id) pairs read here (which then need no
        second existence check)."""
        patient_id = patient_of(order)
        field_name = "patient" if resource_type == "NutritionOrder" else "subject"
        if patient_id is None:
            msg = f"{field_name} must reference a Patient"
            raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.{field_name}")])
        enc_ref = (order.get("encounter") or {}).get("reference")
        parsed = parse_reference(enc_ref) if isinstance(enc_ref, str) else None
        if parsed is not None and parsed[0] != "Encounter":
            parsed = None  # an encounter reference to anything else resolves to no Encounter
        wanted = [("Patient", patient_id)]
        if parsed is not None:
            wanted.append(parsed)
        found = {(r.resource_type, r.id): r for r in self.repo.fetch_many(wanted)}  # one query
        patient = found.get(("Patient", patient_id))
        if patient is None:
            raise PatientNotFound(f"Patient/{patient_id} not found")
        if patient.content.get("deceasedBoolean") or patient.content.get("deceasedDateTime"):
            raise PatientDeceased(f"Patient/{patient_id} is deceased")
        checked = {("Patient", patient_id)}
        if enc_ref:
            encounter = found.get(parsed) if parsed is not None else None
            if encounter is None:
                raise EncounterNotFound(f"{enc_ref} not found")
            checked.add(("Encounter", encounter.id))
            if patient_of(encounter.content) != patient_id:
                raise EncounterInactive(f"{enc_ref} belongs to another patient")
            if encounter.content.get("status") not in ACTIVE_ENCOUNTER:
                raise EncounterInactive(
                    f"{enc_ref} is {encounter.content.get('status')}; orders need an encounter "
                    "that is in-progress, arrived, triaged or onleave"
                )
        return patient_id, checked

    # ------------------------------------------------------------------ CDS context
    def _context(self, order: dict[str, Any], patient_id: str, hook: Hook) -> OrderContext:
        """What the rules read, built the one way every path builds it (cds_context)."""
        return ContextBuilder(self.uow, self.engine).build(order, patient_id, hook)
