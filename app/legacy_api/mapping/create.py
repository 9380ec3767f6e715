"""A legacy create payload (or an order-set template) → the draft FHIR order: the
elements every order shares here, the rest in the family's module (medication, service,
diet). Pure: no storage, no CDS."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.domain.order_types import ORDER_TYPES
from app.legacy_api.mapping import diet, medication, service
from app.legacy_api.mapping.common import (
    CLIENT_MUTATION_SYSTEM,
    JSON,
    add_ext,
    now_instant,
    reference,
)


def resource_type_of(order_type: str) -> str:
    """The FHIR resource type that stores a legacy `orderType`."""
    return ORDER_TYPES[order_type].resource_type


def order_to_fhir(
    payload: Mapping[str, Any], *, now: datetime | str, rid: str | None = None
) -> JSON:
    """A validated legacy create payload (or order-set template, without patient) → the
    draft FHIR order to hand to `OrderService.create`. Pure: no storage, no CDS."""
    otype = ORDER_TYPES[payload["orderType"]]
    rtype = otype.resource_type
    base: JSON = {"resourceType": rtype}
    if rid is not None:
        base["id"] = rid
    if payload.get("orderType") != otype.name:
        add_ext(base, "orderType", payload["orderType"])
    if payload.get("clientMutationId") is not None:
        base["identifier"] = [
            {"system": CLIENT_MUTATION_SYSTEM, "value": payload["clientMutationId"]}
        ]
    base["status"] = "draft"
    base["intent"] = "order"
    if payload.get("patientId") is not None:
        key = "patient" if rtype == "NutritionOrder" else "subject"
        base[key] = reference("Patient", payload["patientId"])
    if payload.get("encounterId") is not None:
        base["encounter"] = reference("Encounter", payload["encounterId"])
    if rtype == "NutritionOrder":
        base["dateTime"] = now_instant(now)
        if payload.get("priority") is not None:
            add_ext(base, "priority", payload["priority"])
    else:
        base["authoredOn"] = now_instant(now)
        if payload.get("priority") is not None:
            base["priority"] = payload["priority"]
    if payload.get("notes") is not None:
        base["note"] = [{"text": payload["notes"]}]
    if rtype == "MedicationRequest":
        return medication.to_fhir(payload, base)
    if rtype == "NutritionOrder":
        return diet.to_fhir(payload, base)
    return service.to_fhir(payload, base, otype)
