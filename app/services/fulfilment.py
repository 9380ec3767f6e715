"""Fulfilment: the Task an activated order gets, its updates by performers, and what they
do to the order (completion completes it; a referral's Appointment marks it scheduled).

See: https://hl7.org/fhir/R4/task.html — `focus` is the order, `for` the patient; a
referral's domain sub-state is `businessStatus` (DESIGN §1).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.domain import access
from app.domain.clock import format_instant
from app.domain.fhir_models import validate_resource
from app.domain.ids import new_id
from app.domain.lifecycle import Action, next_state, state_of
from app.domain.order_types import ORDER_RESOURCE_TYPES, business_status, is_referral
from app.errors import Issue, ResourceNotFound, ValidationFailed
from app.services import provenance
from app.services.resources import check_references
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.extract import parse_reference
from app.store.search.query import parse_search

TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
CLOSED = frozenset({"completed", "cancelled", "entered-in-error", "failed", "rejected"})


#: What ties a Task to its order and patient. Activation sets them; nobody changes them, so a
#: Task can only ever complete its own order (issue 11, item 6).
TASK_TIES = ("focus", "for", "basedOn")


def _check_ties(current: dict[str, Any], doc: dict[str, Any]) -> None:
    changed = [k for k in TASK_TIES if _refs(current.get(k)) != _refs(doc.get(k))]
    if changed:
        paths = ", ".join(f"Task.{k}" for k in changed)
        msg = f"{paths} cannot change: a Task belongs to the order whose activation created it"
        raise ValidationFailed(msg, issues=[Issue(msg, f"Task.{k}") for k in changed])


def _refs(value: Any) -> list[str | None]:
    """The references of a Reference or a list of them, for comparison."""
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [i.get("reference") if isinstance(i, dict) else None for i in items]


class Fulfilment:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.principal = uow.principal

    def _write_new(
        self, rtype: str, rid: str, doc: dict[str, Any], *, reason: str | None
    ) -> StoredResource:
        stored = provenance.write_new(self.repo, self.principal, rtype, rid, doc, reason)
        self.uow.outbox.record(None, stored)
        return stored

    def _write(
        self, rtype: str, rid: str, doc: dict[str, Any], expected: int, *, reason: str | None
    ) -> StoredResource:
        before = self.repo.last_seen(rtype, rid)
        stored = provenance.write(self.repo, self.principal, rtype, rid, doc, expected, reason)
        self.uow.outbox.record(before.content.get("status") if before else None, stored)
        return stored

    def create_task(self, order: StoredResource, patient_id: str, now: datetime) -> StoredResource:
        content = order.content
        task: dict[str, Any] = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": TASK_CODE, "code": "fulfill"}]},
            "focus": {"reference": order.reference},
            "basedOn": [{"reference": order.reference}],
            "for": {"reference": f"Patient/{patient_id}"},
            "authoredOn": format_instant(now),
        }
        if content.get("encounter"):
            task["encounter"] = content["encounter"]
        owner = (
            (content.get("performer") or [None])[0]
            if isinstance(content.get("performer"), list)
            else content.get("performer")
        )
        if owner:
            task["owner"] = owner
        if order.resource_type == "ServiceRequest" and is_referral(content):
            task["businessStatus"] = business_status("pending_scheduling")
        rid = new_id("Task")
        return self._write_new("Task", rid, task, reason="order activated")

    def close_tasks(self, order: StoredResource, status: str, reason: str | None) -> None:
        for task in self.tasks_of(order):
            if task.content.get("status") in CLOSED:
                continue
            doc = {**task.content, "status": status}
            self._write("Task", task.id, doc, task.version_id, reason=reason or f"order {status}")

    def tasks_of(self, order: StoredResource) -> list[StoredResource]:
        """Every Task whose focus is the order (all pages: closing an order closes them all)."""
        return self.repo.search_all(parse_search("Task", [("focus", order.reference)]))

    def update_task(
        self, task_id: str, body: Any, *, if_match: int | None, reason: str | None
    ) -> StoredResource:
        """A performer updates the Task. Completion completes the order (same transaction);
        a referral Task with an Appointment in its output becomes `scheduled`."""
        access.require(self.principal, access.write_action("Task"))
        doc = dict(validate_resource("Task", body))
        check_references(self.uow, "Task", doc)
        current = self.repo.read("Task", task_id, for_update=True)
        if current is None:
            raise ResourceNotFound(f"Task/{task_id} not found; Tasks are created on activation")
        _check_ties(current.content, doc)
        # The order is the one activation tied the Task to (unchanged, checked above).
        focus = parse_reference((current.content.get("focus") or {}).get("reference", ""))
        order = (
            self.repo.read(focus[0], focus[1])
            if focus and focus[0] in ORDER_RESOURCE_TYPES
            else None
        )
        if order and order.resource_type == "ServiceRequest" and is_referral(order.content):
            has_appointment = any(
                (o.get("valueReference") or {}).get("reference", "").startswith("Appointment/")
                for o in doc.get("output", [])
            )
            if has_appointment:
                doc["businessStatus"] = business_status("scheduled")
        expected = if_match if if_match is not None else current.version_id
        stored = self._write("Task", task_id, doc, expected, reason=reason)
        was_done = current.content.get("status") == "completed"
        if order and doc.get("status") == "completed" and not was_done:
            self._complete_order(order)
        return stored

    def _complete_order(self, order: StoredResource) -> None:
        if order.content.get("status") == "completed":
            return
        state = state_of(order.content["status"])
        next_state(state, Action.COMPLETE)
        doc = {**order.content, "status": "completed"}
        self._write(
            order.resource_type, order.id, doc, order.version_id, reason="fulfilment task completed"
        )
