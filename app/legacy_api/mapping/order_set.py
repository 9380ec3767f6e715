"""Order set templates ↔ PlanDefinition (DESIGN §1).

A legacy order set is a PlanDefinition (`type` order-set, `title` = name, `description`)
with one contained ActivityDefinition per template and one `action` per template pointing
at it (`definitionCanonical: "#t1"`), in the client's order.

Each ActivityDefinition has the R4 elements FHIR consumers (and `$apply`) read: `kind`,
`code`, `productCodeableConcept` and `dosage` for medications, `priority`, `bodySite`,
`timing[x]`. R4 ActivityDefinition has no home for most detail fields (specimen type,
referral facility, diet texture, …), so every template field is also kept in a legacy
extension `urn:orders-service:legacy:<field path>`; those extensions are what the legacy
view reads back, so a template round-trips exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.domain.ids import to_legacy
from app.domain.order_types import (
    ACTIVITY_CATEGORY_EXTENSION,
    ORDER_TYPES,
    plan_order_types,
    plan_templates,
    template_order_type,
)
from app.legacy_api.mapping import medication
from app.legacy_api.mapping.common import (
    DETAIL_BLOCKS,
    JSON,
    LEGACY_EXT,
    ext_decode,
    ext_value,
    first_coding,
    legacy_ext,
    legacy_id_of,
    now_instant,
    to_concept,
)
from app.legacy_api.mapping.create import order_to_fhir
from app.legacy_api.mapping.frequency import parse_frequency

PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
#: Template fields whose value is a list (one extension per item).
LIST_FIELDS = frozenset({"dietDetail.supplements"})
TOP_FIELDS = ("orderType", "orderCode", "priority", "notes")


def _computable_name(title: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", title)
    name = "".join(w[:1].upper() + w[1:] for w in words)[:255]
    return name if name[:1].isalpha() else f"OrderSet{name}"[:255]


def _template_extensions(template: Mapping[str, Any]) -> list[JSON]:
    out: list[JSON] = []
    for field in TOP_FIELDS:
        if template.get(field) is not None:
            out.append(legacy_ext(field, template[field]))
    block = DETAIL_BLOCKS[template["orderType"]]
    for field, value in (template.get(block) or {}).items():
        if value is None:
            continue
        path = f"{block}.{field}"
        for item in value if path in LIST_FIELDS else [value]:
            out.append(legacy_ext(path, item))
    return out


def activity_definition(template: Mapping[str, Any], aid: str) -> JSON:
    """One order-set template → a contained ActivityDefinition."""
    otype = ORDER_TYPES[template["orderType"]]
    block = DETAIL_BLOCKS[template["orderType"]]
    d: Mapping[str, Any] = template.get(block) or {}
    ad: JSON = {
        "resourceType": "ActivityDefinition",
        "id": aid,
        "extension": _template_extensions(template),
        "status": "active",
        "kind": otype.resource_type,
    }
    if otype.resource_type == "MedicationRequest":
        ad["productCodeableConcept"] = to_concept(d.get("medicationCode") or template["orderCode"])
    else:
        ad["code"] = to_concept(template["orderCode"])
    if otype.category_code is not None:
        # Read by PlanDefinition/$apply on the FHIR face (app/services/order_sets.py).
        ad["extension"].append(
            {"url": ACTIVITY_CATEGORY_EXTENSION, "valueCodeableConcept": otype.category()[0]}
        )
    timing = d.get("collectionDateTime") or d.get("scheduledDateTime")
    if timing is not None:
        ad["timingDateTime"] = timing
    elif otype.name == "nursing" and d.get("frequency") is not None:
        ad["timingTiming"] = parse_frequency(str(d["frequency"])).timing
    priority = d.get("urgency") or template.get("priority") or d.get("priority")
    if priority is not None:
        ad["priority"] = priority
    if d.get("bodySite") is not None:
        ad["bodySite"] = [{"text": d["bodySite"]}]
    if otype.resource_type == "MedicationRequest":
        dose = medication.dosage(d)
        if dose is not None:
            ad["dosage"] = [dose]
    return ad


def order_set_to_fhir(
    payload: Mapping[str, Any], *, rid: str | None = None, now: datetime | str | None = None
) -> JSON:
    """A validated `POST /v1/order-sets` body → the PlanDefinition to store."""
    contained: list[JSON] = []
    actions: list[JSON] = []
    for i, template in enumerate(payload["orderTemplates"], start=1):
        aid = f"t{i}"
        contained.append(activity_definition(template, aid))
        code = template["orderCode"]
        actions.append(
            {
                "title": str(code.get("display") or code["code"]),
                "definitionCanonical": f"#{aid}",
            }
        )
    pd: JSON = {"resourceType": "PlanDefinition"}
    if rid is not None:
        pd["id"] = rid
    pd["contained"] = contained
    pd["name"] = _computable_name(payload["name"])
    pd["title"] = payload["name"]
    pd["type"] = {"coding": [{"system": PLAN_TYPE, "code": "order-set", "display": "Order Set"}]}
    pd["status"] = "active"
    if now is not None:
        pd["date"] = now_instant(now)
    if payload.get("description") is not None:
        pd["description"] = payload["description"]
    pd["action"] = actions
    return pd


def template_of(ad: Mapping[str, Any]) -> JSON:
    """A contained ActivityDefinition → the legacy order-set template.

    The legacy extensions win; an ActivityDefinition written on the FHIR face without them
    still gives its type (from `kind`, ServiceRequest shown as `procedure`) and code.
    """
    order_type = template_order_type(ad)
    out: JSON = {"orderType": order_type}
    code = (
        ext_value(ad, "orderCode")
        or first_coding(ad.get("code"))
        or first_coding(ad.get("productCodeableConcept"))
    )
    if code is not None:
        out["orderCode"] = code
    priority = ext_value(ad, "priority")
    if priority is not None:
        out["priority"] = priority
    notes = ext_value(ad, "notes")
    if notes is not None:
        out["notes"] = notes
    block = DETAIL_BLOCKS[order_type]
    prefix = f"{LEGACY_EXT}{block}."
    detail: JSON = {}
    for ext in ad.get("extension") or ():
        url = str((ext or {}).get("url", ""))
        if not url.startswith(prefix):
            continue
        field = url[len(prefix) :]
        value = ext_decode(ext)
        if f"{block}.{field}" in LIST_FIELDS:
            detail.setdefault(field, []).append(value)
        else:
            detail[field] = value
    out[block] = detail
    return out


def templates_of(pd: Mapping[str, Any]) -> list[JSON]:
    """The legacy templates of a PlanDefinition, in action order."""
    return [template_of(ad) for ad in plan_templates(pd)]


def order_set_from_fhir(pd: Mapping[str, Any]) -> JSON:
    """PlanDefinition → `{orderSetId, name, description, orderCount, orderTemplates}`."""
    templates = templates_of(pd)
    out: JSON = {
        "orderSetId": to_legacy(str(pd["id"])),
        "name": pd.get("title") or pd.get("name"),
    }
    if pd.get("description") is not None:
        out["description"] = pd["description"]
    out["orderCount"] = len(templates)
    out["orderTemplates"] = templates
    return out


def order_set_created_response(pd: Mapping[str, Any]) -> JSON:
    """The seed's 201 body for `POST /v1/order-sets`: `{orderSetId, name, orderCount}`."""
    return {
        "orderSetId": to_legacy(str(pd["id"])),
        "name": pd.get("title") or pd.get("name"),
        "orderCount": len(templates_of(pd)),
    }


def has_order_type(pd: Mapping[str, Any], order_type: str) -> bool:
    """Whether the set holds a template of `order_type` (`lab` and `laboratory` are one)."""
    return ORDER_TYPES[order_type].name in plan_order_types(pd)


def legacy_request_builder(
    template: Any,
    *,
    patient: Mapping[str, Any],
    encounter: Mapping[str, Any] | None,
    requester: Mapping[str, Any] | None,
    authored: str,
) -> JSON:
    """`PlanDefinition/$apply` request builder for sets created on the legacy face: each
    template becomes exactly the order a direct `POST /v1/orders` of it would create
    (`$apply` then links it to the set like any applied order)."""
    payload: JSON = dict(template_of(template.definition))
    payload["patientId"] = legacy_id_of(patient)
    if encounter is not None:
        payload["encounterId"] = legacy_id_of(encounter)
    doc = order_to_fhir(payload, now=authored)
    if requester is not None and doc["resourceType"] == "MedicationRequest":
        doc["requester"] = dict(requester)
    return doc


def instantiate_payloads(
    pd: Mapping[str, Any], patient_id: str, encounter_id: str | None
) -> list[JSON]:
    """One legacy create payload per template, for `order_to_fhir` (then CDS and store)."""
    out: list[JSON] = []
    for template in templates_of(pd):
        payload: JSON = {"patientId": patient_id}
        if encounter_id is not None:
            payload["encounterId"] = encounter_id
        out.append({**payload, **template})
    return out
