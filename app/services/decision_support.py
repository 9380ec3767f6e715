"""CDS Hooks 2.0 use cases: run the built-in checks for an EHR, and take feedback.

The same engine and rules as the order workflow, so an EHR calling `order-select` for a draft
sees the alerts our create path would store. Prefetch the client sent is used as given
(a `null` key means "no data"); a key it left out is read from the local store for the
tenant; a patient that can be had neither way is 412, as the spec says.
See: https://cds-hooks.hl7.org/2.0/#calling-a-cds-service
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from ulid import ULID

from app import metrics
from app.cds.alerts import Alert
from app.cds.context import Hook
from app.cds.engine import SERVICES, CdsEngine
from app.domain import access
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import (
    CdsAlertNotFound,
    CdsServiceNotFound,
    Issue,
    PrefetchUnavailable,
    ValidationFailed,
)
from app.services import alerts as alert_store
from app.services.cds_context import ContextBuilder, Supplied, statuses_for
from app.services.orders import OrderService
from app.services.resources import find_all
from app.services.unit_of_work import UnitOfWork
from app.store.search.extract import parse_reference

CARD_NAMESPACE = uuid.UUID("5b1f0c3e-8a7d-4c1e-9f2a-3d6b7e8f9a0b")
PREFETCH_TYPES = {
    "allergies": "AllergyIntolerance",
    "medications": "MedicationRequest",
    "services": "ServiceRequest",
    "diets": "NutritionOrder",
}


def discovery() -> dict[str, Any]:
    return {"services": [dict(s) for s in SERVICES]}


def _service(service_id: str) -> dict[str, Any]:
    for s in SERVICES:
        if s["id"] == service_id:
            return dict(s)
    raise CdsServiceNotFound(f"No CDS service {service_id!r}")


def card_uuid(alert_id: str) -> str:
    """A stored alert's card uuid is its ULID as a UUID, so feedback finds the alert again."""
    return str(ULID.from_str(alert_id.split("-", 1)[1]).to_uuid())


def alert_id_from_card(card: str) -> str | None:
    try:
        return f"cds-{ULID.from_uuid(uuid.UUID(card))}"
    except ValueError:
        return None


def _bad(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[Issue(message, path)])


class DecisionSupport:
    def __init__(self, uow: UnitOfWork, engine: CdsEngine) -> None:
        self.uow = uow
        self.engine = engine

    def call(self, service_id: str, request: Any) -> dict[str, Any]:
        access.require(self.uow.principal, access.Permission.CDS_CALL)
        service = _service(service_id)
        hook, context, prefetch = self._parse(service, request)
        patient_id = context["patientId"]
        patient = prefetch.get("patient")
        if patient is None and self.uow.repo.read("Patient", patient_id) is None:
            raise PrefetchUnavailable(f"Patient/{patient_id} is neither prefetched nor known here")
        drafts: list[dict[str, Any]] = [
            e["resource"]
            for e in context["draftOrders"].get("entry", [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
        selected = set(context.get("selections") or [])
        medications = _supplied_medications(drafts, prefetch)
        statuses = statuses_for(hook)
        allergies = self._resources(prefetch, "allergies", patient_id, None)
        stored_orders: list[dict[str, Any]] = []
        for key in ("medications", "services", "diets"):
            stored_orders += self._resources(prefetch, key, patient_id, statuses)
        cards: list[dict[str, Any]] = []
        for draft in drafts:
            ref = f"{draft.get('resourceType')}/{draft.get('id')}"
            if draft.get("resourceType") not in ORDER_RESOURCE_TYPES:
                continue
            if hook == "order-select" and selected and ref not in selected:
                continue
            others = [o for o in stored_orders if f"{o['resourceType']}/{o.get('id')}" != ref]
            if hook == "order-select":
                others += [
                    d
                    for d in drafts
                    if d is not draft and d.get("resourceType") in ORDER_RESOURCE_TYPES
                ]
            supplied = Supplied(
                patient=patient if isinstance(patient, dict) else None,
                allergies=allergies,
                orders=others,
                medications=medications,
            )
            ctx = ContextBuilder(self.uow, self.engine).build(
                draft, patient_id, hook, supplied=supplied
            )
            found = self.engine.evaluate(ctx)
            metrics.cds_alerts(f"cds-hooks:{hook}", found)
            cards += self._cards(ref, found, context["hookInstance"])
        return {"cards": cards}

    def _parse(
        self, service: dict[str, Any], request: Any
    ) -> tuple[Hook, dict[str, Any], dict[str, Any]]:
        if not isinstance(request, dict):
            raise _bad("The request body must be a JSON object", "$")
        hook = request.get("hook")
        if hook != service["hook"]:
            raise _bad(f"This service answers hook {service['hook']!r}, not {hook!r}", "hook")
        if not isinstance(request.get("hookInstance"), str) or not request["hookInstance"]:
            raise _bad("hookInstance (a UUID string) is required", "hookInstance")
        context = request.get("context")
        if not isinstance(context, dict):
            raise _bad("context is required", "context")
        problems = [
            Issue(f"context.{k} is required (a string)", f"context.{k}")
            for k in ("userId", "patientId")
            if not isinstance(context.get(k), str)
        ]
        orders = context.get("draftOrders")
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            problems.append(Issue("context.draftOrders must be a Bundle", "context.draftOrders"))
        if hook == "order-select" and not isinstance(context.get("selections"), list):
            problems.append(Issue("context.selections must be a list", "context.selections"))
        if problems:
            raise ValidationFailed("Malformed CDS Hooks request", issues=problems)
        prefetch = request.get("prefetch", {})
        if prefetch is None:
            prefetch = {}
        if not isinstance(prefetch, dict):
            raise _bad("prefetch must be an object", "prefetch")
        return cast(Hook, hook), {**context, "hookInstance": request["hookInstance"]}, prefetch

    def _resources(
        self, prefetch: dict[str, Any], key: str, patient_id: str, statuses: tuple[str, ...] | None
    ) -> list[dict[str, Any]]:
        """A prefetch key as given (null → no data), or the local store when it is missing."""
        if key in prefetch:
            value = prefetch[key]
            if value is None:
                return []
            if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
                raise _bad(f"prefetch.{key} must be a Bundle or null", f"prefetch.{key}")
            found = [
                e["resource"]
                for e in value.get("entry", [])
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
            return [r for r in found if statuses is None or r.get("status") in statuses]
        params = [("patient", patient_id)]
        if statuses:
            params.append(("status", ",".join(statuses)))
        return find_all(self.uow, PREFETCH_TYPES[key], params)

    def _cards(self, ref: str, found: list[Alert], hook_instance: str) -> list[dict[str, Any]]:
        """Cards for one draft; alerts already stored for that order keep their uuid."""
        stored: dict[str, str] = {}
        parsed = parse_reference(ref)
        if parsed and self.uow.repo.read(parsed[0], parsed[1]) is not None:
            for issue in find_all(self.uow, "DetectedIssue", [("implicated", ref)]):
                v = alert_store.view(issue)
                if not v.resolved:
                    stored[v.cause] = card_uuid(v.id)
        return [
            self.engine.card(
                alert,
                uuid=stored.get(alert.cause)
                or str(uuid.uuid5(CARD_NAMESPACE, f"{hook_instance}|{alert.cause}")),
            )
            for alert in found
        ]

    def feedback(self, service_id: str, body: Any) -> int:
        """`overridden` feedback with a reason acknowledges the stored alert; repeats are no-ops."""
        _service(service_id)
        items = body.get("feedback") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise _bad("feedback must be a list", "feedback")
        recorded = 0
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("card"), str):
                raise _bad("feedback[].card is required", f"feedback[{i}].card")
            if item.get("outcome") not in ("accepted", "overridden"):
                raise _bad("outcome must be accepted or overridden", f"feedback[{i}].outcome")
            if item["outcome"] != "overridden":
                continue
            reason = _override_reason(item.get("overrideReason"))
            if not reason:
                raise _bad(
                    "An override needs overrideReason (reason or userComment)",
                    f"feedback[{i}].overrideReason",
                )
            alert_id = alert_id_from_card(item["card"])
            issue = self.uow.repo.read("DetectedIssue", alert_id) if alert_id else None
            if issue is None:
                raise CdsAlertNotFound(f"No stored alert for card {item['card']}")
            order = parse_reference(issue.content["implicated"][0]["reference"])
            assert order is not None
            OrderService(self.uow, self.engine).acknowledge(
                order[0], order[1], issue.id, reason, expected_version=None
            )
            recorded += 1
        return recorded


def _supplied_medications(
    drafts: list[dict[str, Any]], prefetch: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Medications the caller sent, by `Medication/id`: beside the drafts (R4
    `medicationReference` to a resource in the same Bundle) or in a prefetch Bundle (e.g. a
    `_include`). The ones it did not send are read from the tenant's store (cds_context)."""
    resources = list(drafts)
    for value in prefetch.values():
        if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
            continue
        entries = value.get("entry")
        if isinstance(entries, list):
            resources += [
                e["resource"]
                for e in entries
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
    return {
        f"Medication/{r['id']}": r
        for r in resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str) and r["id"]
    }


def _override_reason(value: Any) -> str | None:
    """The override's reason text: the coded reason's display (or code), then the comment.

    Only non-blank strings count, so a comment of spaces is refused here, at
    `feedback[i].overrideReason` (the field the client sent), not deeper at a `reason` field
    it never saw; and a coded reason with a blank comment stores no trailing spaces."""
    if not isinstance(value, dict):
        return None
    raw = value.get("reason")
    reason: dict[str, Any] = raw if isinstance(raw, dict) else {}
    parts = [reason.get("display") or reason.get("code"), value.get("userComment")]
    text = ": ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return text or None
