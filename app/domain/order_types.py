"""Which FHIR resource and category store each order type (DESIGN §1).

ServiceRequest.category is an example binding in R4; the SNOMED CT codes are those of the
R4 servicerequest-category value set plus 3457005 "Patient referral" (used by other IGs).
Nursing and activity orders have no standard category, so they get local codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SNOMED = "http://snomed.info/sct"
LOCAL = "urn:orders-service:order-category"
#: Task.businessStatus codes of a referral (`pending_scheduling`, `scheduled`).
REFERRAL_STATUS_SYSTEM = "urn:orders-service:referral-status"
#: On an ActivityDefinition: the ServiceRequest category of the orders it produces.
ACTIVITY_CATEGORY_EXTENSION = "urn:orders-service:activitydefinition-category"
#: The FHIR resource types that store orders (every legacy order type is one of these).
ORDER_RESOURCE_TYPES = ("MedicationRequest", "ServiceRequest", "NutritionOrder")


@dataclass(frozen=True)
class OrderType:
    name: str
    resource_type: str
    category_system: str | None = None
    category_code: str | None = None
    category_display: str | None = None

    def category(self) -> list[dict[str, object]]:
        if self.category_code is None:
            return []
        coding = {
            "system": self.category_system,
            "code": self.category_code,
            "display": self.category_display,
        }
        return [{"coding": [coding], "text": self.name}]


ORDER_TYPES: dict[str, OrderType] = {
    t.name: t
    for t in (
        OrderType("medication", "MedicationRequest"),
        OrderType("diet", "NutritionOrder"),
        OrderType("laboratory", "ServiceRequest", SNOMED, "108252007", "Laboratory procedure"),
        OrderType("radiology", "ServiceRequest", SNOMED, "363679005", "Imaging"),
        OrderType("procedure", "ServiceRequest", SNOMED, "387713003", "Surgical procedure"),
        OrderType("referral", "ServiceRequest", SNOMED, "3457005", "Patient referral"),
        OrderType("nursing", "ServiceRequest", LOCAL, "nursing", "Nursing order"),
        OrderType("activity", "ServiceRequest", LOCAL, "activity", "Activity order"),
    )
}
ORDER_TYPES["lab"] = ORDER_TYPES["laboratory"]


def order_type_of(resource: dict[str, object]) -> OrderType | None:
    """The order type a stored resource represents (reverse of ORDER_TYPES)."""
    rtype = resource.get("resourceType")
    if rtype == "MedicationRequest":
        return ORDER_TYPES["medication"]
    if rtype == "NutritionOrder":
        return ORDER_TYPES["diet"]
    categories = resource.get("category")
    codes = {
        (c.get("system"), c.get("code"))
        for cat in (categories if isinstance(categories, list) else [])
        if isinstance(cat, dict)
        for c in cat.get("coding", [])
        if isinstance(c, dict)
    }
    for t in ORDER_TYPES.values():
        if t.resource_type == "ServiceRequest" and (t.category_system, t.category_code) in codes:
            return t
    return None


def is_referral(order: dict[str, Any]) -> bool:
    """Is this ServiceRequest a referral (category SNOMED 3457005)?"""
    referral = ORDER_TYPES["referral"]
    return any(
        isinstance(c, dict) and c.get("code") == referral.category_code
        for cat in order.get("category", [])
        if isinstance(cat, dict)
        for c in cat.get("coding", [])
    )


def business_status(code: str) -> dict[str, Any]:
    """A referral Task's businessStatus."""
    return {"coding": [{"system": REFERRAL_STATUS_SYSTEM, "code": code}], "text": code}


#: On an order-set template (a contained ActivityDefinition): the legacy `orderType` it was
#: created with (app/legacy_api/mapping/order_set.py writes it).
TEMPLATE_ORDER_TYPE_EXTENSION = "urn:orders-service:legacy:orderType"
_KIND_TYPE = {"MedicationRequest": "medication", "NutritionOrder": "diet"}


def plan_templates(plan: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The order-set templates of a PlanDefinition as the legacy face shows them: the
    contained ActivityDefinition of each top-level action (`definitionCanonical: "#id"`),
    in action order."""
    contained = {
        c.get("id"): c
        for c in plan.get("contained") or ()
        if isinstance(c, dict) and c.get("resourceType") == "ActivityDefinition"
    }
    out: list[Mapping[str, Any]] = []
    for action in plan.get("action") or ():
        ref = str((action if isinstance(action, dict) else {}).get("definitionCanonical") or "")
        definition = contained.get(ref[1:]) if ref.startswith("#") else None
        if definition is not None:
            out.append(definition)
    return out


def template_order_type(definition: Mapping[str, Any]) -> str:
    """A template's order type as written (`lab` stays `lab`): the legacy extension, else
    from `kind` (a ServiceRequest without it counts as a procedure)."""
    for ext in definition.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == TEMPLATE_ORDER_TYPE_EXTENSION:
            value = ext.get("valueString")
            if value in ORDER_TYPES:
                return str(value)
            break
    return _KIND_TYPE.get(str(definition.get("kind")), "procedure")


def plan_order_types(plan: Mapping[str, Any]) -> set[str]:
    """The order types (canonical names: `lab` is `laboratory`) an order set's templates
    hold: what the legacy `orderType` filter matches, indexed as `PlanDefinition.order-type`."""
    return {ORDER_TYPES[template_order_type(d)].name for d in plan_templates(plan)}
