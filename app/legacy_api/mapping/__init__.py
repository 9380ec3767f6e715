"""The legacy order shapes computed from, and written as, FHIR resources (DESIGN §1, §5).

Nothing here touches storage: a legacy create payload becomes a draft FHIR resource
(`order_to_fhir`), and a stored resource plus its DetectedIssues, Task and history becomes
the legacy order object (`order_from_fhir`). One module per order family:
`medication` (MedicationRequest), `service` (ServiceRequest: laboratory, radiology,
procedure, referral, nursing, activity), `diet` (NutritionOrder), `order_set`
(PlanDefinition with contained ActivityDefinitions).

Elements every order shares (legacy → FHIR):

* `patientId`, `encounterId` → `subject` (NutritionOrder: `patient`), `encounter`; ids
  through `app.domain.ids`;
* `orderType` → the resource type, plus `category` for a ServiceRequest (the client's
  alias `lab` is kept in an extension);
* `priority` → `priority` (NutritionOrder has none: extension);
* `notes` → `note[0].text`;
* `clientMutationId` → `identifier` {system `urn:orders-service:client-mutation-id`};
* back: `orderId` ← `id`, `status` ← `status` (`revoked`/`cancelled`/`stopped` →
  `cancelled`), `version` ← `meta.versionId`, `updatedAt` ← `meta.lastUpdated`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.domain.ids import from_legacy, to_legacy
from app.domain.order_types import (
    ORDER_RESOURCE_TYPES,
    ORDER_TYPES,
    SNOMED,
    OrderType,
    order_type_of,
)
from app.legacy_api.mapping import diet, medication, service
from app.legacy_api.mapping.common import (
    CLIENT_MUTATION_SYSTEM,
    DETAIL_BLOCKS,
    FHIR_STATUSES,
    JSON,
    HistoryEntry,
    alert_to_legacy,
    ext_value,
    first_coding,
    history_entries,
    legacy_id_of,
    legacy_status,
)
from app.legacy_api.mapping.create import order_to_fhir, resource_type_of
from app.legacy_api.mapping.frequency import parse_frequency
from app.legacy_api.mapping.order_set import (
    has_order_type,
    instantiate_payloads,
    legacy_request_builder,
    order_set_created_response,
    order_set_from_fhir,
    order_set_to_fhir,
    templates_of,
)
from app.legacy_api.mapping.service import referral_status, scheduled_appointment_id

__all__ = [
    "CLIENT_MUTATION_SYSTEM",
    "DATE_PARAM",
    "DETAIL_BLOCKS",
    "FHIR_STATUSES",
    "HistoryEntry",
    "acknowledge_response",
    "alert_to_legacy",
    "client_mutation_id",
    "created_response",
    "has_order_type",
    "history_entries",
    "instantiate_payloads",
    "legacy_order_type",
    "legacy_request_builder",
    "legacy_status",
    "mutation_response",
    "order_from_fhir",
    "order_searches",
    "order_set_created_response",
    "order_set_from_fhir",
    "order_set_to_fhir",
    "order_to_fhir",
    "parse_frequency",
    "referral_search",
    "referral_status",
    "resource_type_of",
    "scheduled_appointment_id",
    "templates_of",
]

#: The date search parameter (authored time) of each order resource type.
DATE_PARAM = {
    "MedicationRequest": "authoredon",
    "ServiceRequest": "authored",
    "NutritionOrder": "datetime",
}


# ---------------------------------------------------------------- FHIR → legacy
def _order_type(resource: Mapping[str, Any]) -> OrderType:
    found = order_type_of(dict(resource))
    # A ServiceRequest written on the FHIR face without one of our categories is shown as
    # the most generic service order.
    return found if found is not None else ORDER_TYPES["procedure"]


def legacy_order_type(resource: Mapping[str, Any]) -> str:
    """The legacy `orderType` of a stored order (the client's `lab` alias is kept)."""
    alias = ext_value(resource, "orderType")
    return str(alias) if alias in ORDER_TYPES else _order_type(resource).name


def client_mutation_id(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == CLIENT_MUTATION_SYSTEM:
            return ident.get("value")
    return None


def _version(resource: Mapping[str, Any]) -> int | None:
    value = (resource.get("meta") or {}).get("versionId")
    return int(value) if value is not None else None


def _order_code(resource: Mapping[str, Any]) -> JSON | None:
    rtype = resource.get("resourceType")
    if rtype == "MedicationRequest":
        return medication.order_code_of(resource)
    if rtype == "NutritionOrder":
        return diet.order_code_of(resource)
    return first_coding(resource.get("code"))


def order_from_fhir(
    resource: Mapping[str, Any],
    *,
    alerts: Iterable[Mapping[str, Any]] = (),
    task: Mapping[str, Any] | None = None,
    history: Sequence[HistoryEntry] = (),
    created_at: str | None = None,
) -> JSON:
    """The full legacy order (DESIGN §5 "Legacy shapes") of a stored FHIR order.

    `alerts`: the order's DetectedIssue resources; `task`: its fulfilment Task (gives a
    referral's `referralStatus` and `scheduledAppointmentId`); `history`: from
    `history_entries`; `created_at`: the first version's time (default: version 1's entry
    in `history`, which is the 201's `createdAt`; else the authored time).
    """
    otype = _order_type(resource)
    name = legacy_order_type(resource)
    rtype = resource.get("resourceType")
    out: JSON = {}
    if resource.get("id") is not None:
        out["orderId"] = to_legacy(str(resource["id"]))
    patient = legacy_id_of(resource.get("patient" if rtype == "NutritionOrder" else "subject"))
    if patient is not None:
        out["patientId"] = patient
    encounter = legacy_id_of(resource.get("encounter"), "Encounter")
    if encounter is not None:
        out["encounterId"] = encounter
    out["orderType"] = name
    code = _order_code(resource)
    if code is not None:
        out["orderCode"] = code
    # NutritionOrder has no priority element; a referral keeps a top-level priority that
    # differs from its urgency in the same extension.
    priority = ext_value(resource, "priority") or resource.get("priority")
    if priority is not None:
        out["priority"] = priority
    notes = [str(n["text"]) for n in resource.get("note") or () if n.get("text")]
    if notes:
        out["notes"] = "\n\n".join(notes)
    mutation = client_mutation_id(resource)
    if mutation is not None:
        out["clientMutationId"] = mutation
    block = DETAIL_BLOCKS[name]
    if rtype == "MedicationRequest":
        out[block] = medication.detail_of(resource)
    elif rtype == "NutritionOrder":
        out[block] = diet.detail_of(resource)
    else:
        out[block] = service.detail_of(resource, otype, task)
    out["status"] = legacy_status(str(resource.get("status")))
    out["version"] = _version(resource)
    out["cdsAlerts"] = [alert_to_legacy(a) for a in alerts]
    updated = (resource.get("meta") or {}).get("lastUpdated")
    out["createdAt"] = (
        created_at
        or (history[0].at if history and history[0].version == 1 else None)
        or (updated if out["version"] == 1 else None)
        or resource.get("authoredOn")
        or resource.get("dateTime")
        or updated
    )
    out["updatedAt"] = updated
    out["history"] = [h.to_json() for h in history]
    return out


def created_response(resource: Mapping[str, Any], alerts: Iterable[Mapping[str, Any]]) -> JSON:
    """The seed's 201 body for `POST /v1/orders` from the stored draft and its alerts."""
    rtype = resource.get("resourceType")
    patient = legacy_id_of(resource.get("patient" if rtype == "NutritionOrder" else "subject"))
    return {
        "orderId": to_legacy(str(resource["id"])),
        "patientId": patient,
        "orderType": legacy_order_type(resource),
        "status": legacy_status(str(resource.get("status"))),
        "cdsAlerts": [alert_to_legacy(a) for a in alerts],
        "version": _version(resource),
        "createdAt": (resource.get("meta") or {}).get("lastUpdated"),
    }


def mutation_response(resource: Mapping[str, Any]) -> JSON:
    """`{orderId, status, version}`: the 200 of activate, cancel, hold, resume, correction."""
    return {
        "orderId": to_legacy(str(resource["id"])),
        "status": legacy_status(str(resource.get("status"))),
        "version": _version(resource),
    }


def acknowledge_response(issue: Mapping[str, Any], resource: Mapping[str, Any]) -> JSON:
    """`{alertId, acknowledged, version}` after an acknowledgement (version of the order)."""
    alert = alert_to_legacy(issue)
    return {
        "alertId": alert["alertId"],
        "acknowledged": alert["acknowledged"],
        "version": _version(resource),
    }


# ---------------------------------------------------------------- list filters → search
def order_searches(query: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Validated `GET /v1/orders` filters → FHIR search parameters per resource type.

    Returns `(resource type, params)` for each type that can hold matching orders.
    NutritionOrder has no priority element (the legacy priority is an extension, not
    searchable), so a `priority` filter leaves diet orders out.
    """
    order_type = query.get("orderType")
    if order_type is not None:
        types = [ORDER_TYPES[order_type]]
        rtypes = [types[0].resource_type]
    else:
        rtypes = list(ORDER_RESOURCE_TYPES)
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for rtype in rtypes:
        params: list[tuple[str, str]] = []
        if query.get("patientId") is not None:
            params.append(("patient", f"Patient/{from_legacy(query['patientId'])}"))
        if query.get("encounterId") is not None:
            params.append(("encounter", f"Encounter/{from_legacy(query['encounterId'])}"))
        if order_type is not None and rtype == "ServiceRequest":
            otype = ORDER_TYPES[order_type]
            params.append(("category", f"{otype.category_system}|{otype.category_code}"))
        if query.get("status") is not None:
            params.append(("status", ",".join(FHIR_STATUSES[query["status"]])))
        if query.get("from") is not None:
            params.append((DATE_PARAM[rtype], f"ge{query['from']}"))
        if query.get("to") is not None:
            params.append((DATE_PARAM[rtype], f"le{query['to']}"))
        if query.get("priority") is not None:
            if rtype == "NutritionOrder":
                continue
            params.append(("priority", query["priority"]))
        out.append((rtype, params))
    return out


def referral_search(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Validated `GET /v1/orders/referrals` filters → ServiceRequest search parameters.

    `referralStatus` lives on the referral's Task (`Task?business-status=…`), not on the
    ServiceRequest: `OrderReader.referrals` takes it apart and has the database join it.
    """
    referral = ORDER_TYPES["referral"]
    params: list[tuple[str, str]] = [("category", f"{SNOMED}|{referral.category_code}")]
    if query.get("patientId") is not None:
        params.append(("patient", f"Patient/{from_legacy(query['patientId'])}"))
    if query.get("referToFacilityId") is not None:
        params.append(("performer", f"Organization/{from_legacy(query['referToFacilityId'])}"))
    if query.get("urgency") is not None:
        params.append(("priority", query["urgency"]))
    if query.get("from") is not None:
        params.append(("authored", f"ge{query['from']}"))
    if query.get("to") is not None:
        params.append(("authored", f"le{query['to']}"))
    return params
