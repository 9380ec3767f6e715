"""Order use cases shared by every face: lifecycle transitions, activation (CDS re-run,
Task creation), acknowledgement, and FHIR PUT through the same state machine; creation is
in app/services/order_creation.py.

Each method runs inside the caller's unit of work, checks the version atomically (the
repository's compare-and-set), writes Provenance with the reason, and returns the new state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app import metrics
from app.domain import access
from app.domain.clock import utcnow
from app.domain.fhir_models import validate_resource
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
    AppError,
    CdsAlertNotFound,
    CdsHardStop,
    CdsHardStopNotAcknowledgeable,
    CdsWarningUnacknowledged,
    InvalidStateTransition,
    Issue,
    OrderNotFound,
    OrderTerminalState,
    ValidationFailed,
    VersionConflict,
)
from app.services import alerts as alert_store
from app.services.fulfilment import Fulfilment
from app.services.order_creation import (
    MutationKey,
    OrderCreation,
    OrderResult,
    patient_of,
)
from app.services.resources import check_references, check_same_patient
from app.store import StoredResource

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


class OrderService(OrderCreation):
    """Every order use case; creation comes from OrderCreation."""

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
            try:
                return self._activate(current, reason=reason)
            except AppError as refused:
                metrics.activation_refused(refused.code)
                raise
        doc = dict(current.content)  # its meta too: tags and security labels stay
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
        metrics.cds_alerts("order-sign", found)
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
        # Entered-in-error is a correction (CLINICIAN, ADMIN), any other PUT an order write.
        correction = isinstance(body, dict) and body.get("status") == "entered-in-error"
        need = access.Permission.CORRECTION if correction else access.write_action(resource_type)
        access.require(self.principal, need)
        doc = validate_resource(resource_type, body)
        current = self.repo.read(resource_type, rid, for_update=True)
        if current is None:
            if if_match is not None:
                raise VersionConflict(f"{resource_type}/{rid} does not exist at any version")
            return self.create(resource_type, doc, rid=rid, reason=reason, validated=True), True
        state = state_of(current.content["status"])
        new_status = doc.get("status")
        if new_status != current.content["status"]:
            action = action_for_status_change(state, str(new_status))
            if action is Action.ACTIVATE:
                msg = "Activate an order with POST [type]/[id]/$activate (it runs the checks)"
                raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.status")])
            # Only the status and its reason are taken from the body: the change is applied
            # to the stored order, as the operation would.
            text = _reason_text(doc) or reason
            result = self.transition(
                resource_type, rid, action, expected_version=if_match, reason=text
            )
            return result, False
        if state in TERMINAL:
            raise OrderTerminalState(f"{current.reference} is {state.value}; it cannot change")
        if state is not State.DRAFT:
            raise InvalidStateTransition(
                f"{current.reference} is {state.value}; only drafts can be edited "
                "(cancel and re-order instead)"
            )
        check_same_patient(resource_type, current, doc)
        _patient, checked = self._check_patient_and_encounter(resource_type, doc)
        check_references(self.uow, resource_type, doc, known=checked)
        expected = if_match if if_match is not None else current.version_id
        if "detectedIssue" in current.content:
            doc = {**doc, "detectedIssue": current.content["detectedIssue"]}
        stored = self._write(resource_type, rid, doc, expected, reason=reason)
        return OrderResult(stored), False


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


__all__ = ["MutationKey", "OrderResult", "OrderService", "patient_of"]
