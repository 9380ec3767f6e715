"""Order use cases shared by every face: create (with the CDS gate), lifecycle transitions,
activation (CDS re-run, Task creation), acknowledgement, and completion from the Task.

Each method runs inside the caller's unit of work, checks the version atomically (the
repository's compare-and-set), writes Provenance with the reason, and returns the new state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.cds.context import Hook, OrderContext
from app.cds.engine import CdsEngine
from app.domain import access
from app.domain.clock import utcnow
from app.domain.fhir_models import validate_resource
from app.domain.ids import new_id
from app.domain.lifecycle import (
    TERMINAL,
    Action,
    State,
    action_for_status_change,
    fhir_status,
    next_state,
    state_of,
)
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import (
    CdsAlertNotFound,
    CdsHardStop,
    CdsHardStopNotAcknowledgeable,
    CdsWarningUnacknowledged,
    DuplicateMutation,
    EncounterInactive,
    EncounterNotFound,
    InvalidStateTransition,
    Issue,
    OrderNotFound,
    OrderTerminalState,
    PatientDeceased,
    PatientNotFound,
    ValidationFailed,
    VersionConflict,
)
from app.services import alerts as alert_store
from app.services import provenance
from app.services.fulfilment import Fulfilment
from app.services.resources import check_references, find_all
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.extract import parse_reference

#: `conditional_keys.res_type` for client mutation keys (one namespace for all order types).
MUTATION_KEYS = "client-mutation"
ACTIVE_ENCOUNTER = frozenset({"in-progress", "arrived", "triaged", "onleave"})
COUNTS_AT_CREATE = ("draft", "active", "on-hold")
COUNTS_AT_SIGN = ("active", "on-hold")
STATUS_REASON_EXT = "http://hl7.org/fhir/StructureDefinition/request-statusReason"
#: The state an action leaves an order in, when that state is terminal.
ALREADY_DONE = {
    Action.CANCEL: State.CANCELLED,
    Action.CORRECTION: State.ENTERED_IN_ERROR,
    Action.COMPLETE: State.COMPLETED,
}
ACTION_ROLE = {
    Action.ACTIVATE: access.Permission.ORDER_WRITE,
    Action.CANCEL: access.Permission.ORDER_WRITE,
    Action.HOLD: access.Permission.HOLD_RESUME,
    Action.RESUME: access.Permission.HOLD_RESUME,
    Action.CORRECTION: access.Permission.CORRECTION,
    Action.COMPLETE: access.Permission.TASK_WRITE,
}


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


class OrderService:
    def __init__(self, uow: UnitOfWork, engine: CdsEngine) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.principal = uow.principal
        self.engine = engine

    # ------------------------------------------------------------------ writes
    def _write_new(
        self, resource_type: str, rid: str, doc: dict[str, Any], *, reason: str | None
    ) -> StoredResource:
        return provenance.write_new(self.repo, self.principal, resource_type, rid, doc, reason)

    def _write(
        self,
        resource_type: str,
        rid: str,
        doc: dict[str, Any],
        expected: int,
        *,
        reason: str | None,
    ) -> StoredResource:
        return provenance.write(
            self.repo, self.principal, resource_type, rid, doc, expected, reason
        )

    # ------------------------------------------------------------------ create
    def create(
        self,
        resource_type: str,
        body: Any,
        *,
        rid: str | None = None,
        reason: str | None = None,
        mutation: MutationKey | None = None,
    ) -> OrderResult:
        """Validate, check patient and encounter, run order-select CDS, then store.

        A hard-stop stores nothing (422 CDS_HARD_STOP with the alerts in details); other
        alerts are stored as DetectedIssues linked to the draft. With a client mutation key,
        the key is claimed in the same transaction: a key already taken by the same payload
        returns that order (`replayed`), by another payload is 409 DUPLICATE_MUTATION.
        """
        access.require(self.principal, access.Permission.ORDER_WRITE)
        order = validate_resource(resource_type, body)
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

    def _claim_mutation(self, mutation: MutationKey, rid: str) -> OrderResult | None:
        if self.repo.claim_conditional_key(MUTATION_KEYS, mutation.key, rid, mutation.payload_hash):
            return None
        owner = self.repo.key_owner(MUTATION_KEYS, mutation.key)
        if owner is None or owner[1] != mutation.payload_hash:
            raise DuplicateMutation("clientMutationId was already used with a different payload")
        existing = self.repo.read_any(ORDER_RESOURCE_TYPES, owner[0])
        if existing is None:  # pragma: no cover - the key row is written with its order
            raise DuplicateMutation("clientMutationId belongs to an order that is not visible")
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
        """Load what the rules for this order type read, and no more (app/cds/rules):

        - MedicationRequest: the allergies and the open MedicationRequests (drug-allergy,
          interactions and duplicates compare the drug with all of them);
        - ServiceRequest: open ServiceRequests sharing one of its codes (the duplicate rule
          compares nothing else) — an indexed lookup instead of every open order;
        - NutritionOrder: open NutritionOrders (diet duplicates; few per patient).

        Every rule compares an order only with orders of its own type. "Open" is per hook:
        draft/active/on-hold at order-select, active/on-hold at order-sign (DESIGN §6).
        """
        statuses = COUNTS_AT_CREATE if hook == "order-select" else COUNTS_AT_SIGN
        rtype = order["resourceType"]
        repo = self.repo
        allergies: list[dict[str, Any]] = []
        if rtype == "MedicationRequest":
            allergies = [r.content for r in repo.of_patient("AllergyIntolerance", patient_id)]
        codes = _code_filter(order.get("code")) if rtype == "ServiceRequest" else None
        if codes == []:  # no code: nothing to compare, nothing to load
            others: list[dict[str, Any]] = []
        else:
            found = repo.of_patient(rtype, patient_id, statuses=statuses, codes=codes)
            others = [r.content for r in found if r.id != order.get("id")]
        return OrderContext(
            order=order,
            patient_id=patient_id,
            allergies=tuple(allergies),
            other_orders=tuple(others),
            hook=hook,
        )

    # ------------------------------------------------------------------ transitions
    def locate(self, rid: str) -> StoredResource:
        """An order by id alone (legacy ids carry no type). Write paths use this: the action's
        own role rule applies, not the read rule (a PRESCRIBER may cancel but not browse)."""
        found = self.repo.read_any(ORDER_RESOURCE_TYPES, rid)
        if found is None:
            raise OrderNotFound(f"Order {rid} not found")
        return found

    def load(self, resource_type: str, rid: str) -> StoredResource:
        if resource_type not in ORDER_RESOURCE_TYPES:
            raise OrderNotFound(f"{resource_type} is not an order type")
        found = self.repo.read(resource_type, rid, for_update=True)
        if found is None:
            raise OrderNotFound(f"{resource_type}/{rid} not found")
        return found

    def transition(
        self,
        resource_type: str,
        rid: str,
        action: Action,
        *,
        expected_version: int | None,
        reason: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> OrderResult:
        """Apply a lifecycle action, checking in this order (DESIGN §5):

        1. a terminal order answers ORDER_TERMINAL_STATE even when the version is also stale
           (a queued cancel must learn the order completed) — unless the order already is
           what this action makes it (a cancel that lost a race to another cancel): then
           the client's view is merely stale, 409 OPTIMISTIC_LOCK_CONFLICT;
        2. a stale version is OPTIMISTIC_LOCK_CONFLICT;
        3. any other illegal pair is INVALID_STATE_TRANSITION.
        """
        access.require(self.principal, ACTION_ROLE[action])
        current = self.load(resource_type, rid)
        state = state_of(current.content["status"])
        stale = expected_version is not None and expected_version != current.version_id
        conflict = VersionConflict(
            f"{resource_type}/{rid} is at version {current.version_id}, not {expected_version}"
        )
        if state in TERMINAL:
            if stale and ALREADY_DONE.get(action) is state:
                raise conflict
            next_state(state, action)  # raises ORDER_TERMINAL_STATE unless a correction
        if stale:
            raise conflict
        target = next_state(state, action)
        if action is Action.ACTIVATE:
            return self._activate(current, reason=reason)
        doc = dict(content if content is not None else current.content)
        doc["status"] = fhir_status(resource_type, target, previous=state)
        if reason:
            doc = _with_status_reason(resource_type, doc, reason)
        stored = self._write(
            resource_type, rid, doc, current.version_id, reason=reason or action.value
        )
        if target in (State.CANCELLED, State.ENTERED_IN_ERROR):
            Fulfilment(self.uow).close_tasks(
                stored, "cancelled" if target is State.CANCELLED else "entered-in-error", reason
            )
        return OrderResult(stored)

    def _activate(self, current: StoredResource, *, reason: str | None) -> OrderResult:
        """order-sign: re-run CDS on current server state, reconcile alerts, gate, activate."""
        order = current.content
        patient_id, _checked = self._check_patient_and_encounter(current.resource_type, order)
        found = self.engine.evaluate(self._context(order, patient_id, "order-sign"))
        now = utcnow()
        issues, current = self._reconcile(current, patient_id, found, now)
        views = [alert_store.view(i) for i in issues]
        open_views = [v for v in views if not v.resolved]
        details = [_alert_detail(v) for v in open_views]
        if any(v.level == "hard-stop" for v in open_views):
            raise CdsHardStop("A hard-stop alert blocks activation", details=details)
        if any(v.level == "warning" and not v.acknowledged for v in open_views):
            raise CdsWarningUnacknowledged(
                "Acknowledge every warning (with a reason) before activation", details=details
            )
        doc = {**current.content, "status": "active"}
        stored = self._write(
            current.resource_type, current.id, doc, current.version_id, reason=reason or "activate"
        )
        task = Fulfilment(self.uow).create_task(stored, patient_id, now)
        return OrderResult(stored, issues, task)

    def _reconcile(
        self, current: StoredResource, patient_id: str, found: list[Any], now: datetime
    ) -> tuple[list[dict[str, Any]], StoredResource]:
        """Store new alerts, resolve those whose cause is gone; return the order's alerts and
        the order as it now is (a MedicationRequest gains links to new alerts)."""
        order_ref = current.reference
        existing = self._alerts_of(current)
        by_cause = {alert_store.view(i).cause: i for i in existing}
        live_causes = {a.cause for a in found}
        result: list[dict[str, Any]] = []
        for issue in existing:
            v = alert_store.view(issue)
            if not v.resolved and v.cause not in live_causes:
                issue = self._write_issue(
                    alert_store.resolved(issue, now), "cause no longer present"
                )
            result.append(issue)
        new = [
            alert_store.build(a, patient_id=patient_id, order_ref=order_ref, now=now)
            for a in found
            if a.cause not in by_cause or alert_store.view(by_cause[a.cause]).resolved
        ]
        for issue in new:
            self._write_new(
                "DetectedIssue", issue["id"], issue, reason="order-sign decision support"
            )
            result.append(issue)
        if new and current.resource_type == "MedicationRequest":
            links = [
                *current.content.get("detectedIssue", []),
                *({"reference": f"DetectedIssue/{i['id']}"} for i in new),
            ]
            current = self._write(
                current.resource_type,
                current.id,
                {**current.content, "detectedIssue": links},
                current.version_id,
                reason="order-sign decision support found new alerts",
            )
        return result, current

    def _write_issue(self, issue: dict[str, Any], reason: str) -> dict[str, Any]:
        stored = self.repo.read("DetectedIssue", issue["id"])
        assert stored is not None
        saved = self._write("DetectedIssue", issue["id"], issue, stored.version_id, reason=reason)
        return saved.content

    def _alerts_of(self, order: StoredResource) -> list[dict[str, Any]]:
        return [
            issue
            for issue in find_all(self.uow, "DetectedIssue", [("implicated", order.reference)])
            if (issue.get("implicated") or [{}])[0].get("reference") == order.reference
        ]

    # ------------------------------------------------------------------ acknowledge
    def acknowledge(
        self,
        resource_type: str,
        rid: str,
        alert_id: str,
        reason: str,
        *,
        expected_version: int | None,
    ) -> OrderResult:
        """Acknowledging is a mutation of the order: it needs the current version and bumps it."""
        access.require(self.principal, access.Permission.ORDER_WRITE)
        if not reason or not reason.strip():
            raise ValidationFailed("A reason is required", issues=[Issue("required", "reason")])
        current = self.load(resource_type, rid)
        if state_of(current.content["status"]) in TERMINAL:
            raise OrderTerminalState(f"{current.reference} is {current.content['status']}")
        if expected_version is not None and expected_version != current.version_id:
            raise VersionConflict(
                f"{resource_type}/{rid} is at version {current.version_id}, not {expected_version}"
            )
        issue = next((i for i in self._alerts_of(current) if i["id"] == alert_id), None)
        if issue is None:
            raise CdsAlertNotFound(f"Alert {alert_id} not found on {current.reference}")
        view = alert_store.view(issue)
        if view.level == "hard-stop":
            raise CdsHardStopNotAcknowledgeable("A hard-stop alert cannot be acknowledged")
        if view.acknowledged:  # the same acknowledgement again changes nothing (idempotent)
            return OrderResult(current, [issue])
        now = utcnow()
        issue = self._write_issue(
            alert_store.acknowledged(issue, self.principal, reason, now), f"acknowledged: {reason}"
        )
        stored = self._write(
            resource_type,
            rid,
            current.content,
            current.version_id,
            reason=f"alert {alert_id} acknowledged: {reason}",
        )
        return OrderResult(stored, [issue])

    def put_order(
        self, resource_type: str, rid: str, body: Any, *, if_match: int | None, reason: str | None
    ) -> tuple[OrderResult, bool]:
        """FHIR `PUT` of an order goes through the same state machine as the operations.

        A new id is an order create (draft, CDS-checked). A status change is the lifecycle
        action it amounts to (hold, resume, cancel/revoke, entered-in-error); activation must
        use `$activate`, which runs the signing checks. Other edits are allowed only on drafts.
        """
        access.require(self.principal, access.Permission.ORDER_WRITE)
        doc = validate_resource(resource_type, body)
        current = self.repo.read(resource_type, rid, for_update=True)
        if current is None:
            if if_match is not None:
                raise VersionConflict(f"{resource_type}/{rid} does not exist at any version")
            return self.create(resource_type, doc, rid=rid, reason=reason), True
        state = state_of(current.content["status"])
        new_status = doc.get("status")
        if new_status != current.content["status"]:
            action = action_for_status_change(state, str(new_status))
            if action is Action.ACTIVATE:
                msg = "Activate an order with POST [type]/[id]/$activate (it runs the checks)"
                raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.status")])
            text = _reason_text(doc) or reason
            content = {k: v for k, v in current.content.items() if k != "meta"}
            result = self.transition(
                resource_type,
                rid,
                action,
                expected_version=if_match,
                reason=text,
                content=content,
            )
            return result, False
        if state in TERMINAL:
            raise OrderTerminalState(f"{current.reference} is {state.value}; it cannot change")
        if state is not State.DRAFT:
            raise InvalidStateTransition(
                f"{current.reference} is {state.value}; only drafts can be edited "
                "(cancel and re-order instead)"
            )
        _patient, checked = self._check_patient_and_encounter(resource_type, doc)
        check_references(self.uow, resource_type, doc, known=checked)
        expected = if_match if if_match is not None else current.version_id
        if "detectedIssue" in current.content:
            doc = {**doc, "detectedIssue": current.content["detectedIssue"]}
        stored = self._write(resource_type, rid, doc, expected, reason=reason)
        return OrderResult(stored), False


def _code_filter(concept: Any) -> list[tuple[str, str]] | None:
    """(system, code) of every coding of the concept ([] when it has none; system "" for a
    coding without one, which matches the code in any system, a superset the rule
    narrows), or None when a code is longer than the index keeps (255 characters): then
    all open orders are loaded and the rule compares them itself."""
    if not isinstance(concept, dict):
        return []
    values: list[tuple[str, str]] = []
    for coding in concept.get("coding") or ():
        if not isinstance(coding, dict) or not coding.get("code"):
            continue
        system, code = str(coding.get("system") or ""), str(coding["code"])
        if len(system) > 255 or len(code) > 255:
            return None
        values.append((system, code))
    return values


def _reason_text(doc: dict[str, Any]) -> str | None:
    """The reason a client put on a status change: `statusReason` or the R4 extension."""
    concept = doc.get("statusReason") or next(
        (
            e.get("valueCodeableConcept")
            for e in doc.get("extension", [])
            if e.get("url") == STATUS_REASON_EXT
        ),
        None,
    )
    if not isinstance(concept, dict):
        return None
    return concept.get("text") or next(
        (c.get("display") or c.get("code") for c in concept.get("coding", [])), None
    )


def _with_status_reason(resource_type: str, doc: dict[str, Any], reason: str) -> dict[str, Any]:
    """MedicationRequest has `statusReason`; ServiceRequest/NutritionOrder use the R4
    request-statusReason extension."""
    concept = {"text": reason}
    if resource_type == "MedicationRequest":
        return {**doc, "statusReason": concept}
    ext = [e for e in doc.get("extension", []) if e.get("url") != STATUS_REASON_EXT]
    ext.append({"url": STATUS_REASON_EXT, "valueCodeableConcept": concept})
    return {**doc, "extension": ext}


def _alert_detail(v: alert_store.AlertView) -> dict[str, Any]:
    return {
        "alertId": v.id,
        "ruleId": v.rule_id,
        "level": v.level,
        "message": v.message,
        "acknowledged": v.acknowledged,
    }
