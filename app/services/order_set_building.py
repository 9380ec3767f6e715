"""Order sets, the pure part: which templates a PlanDefinition holds (validated), and the
draft request an ActivityDefinition produces for a patient, plus the RequestGroup and CarePlan
that record an instantiation. Nothing here reads or writes the store; `$apply` itself
(app/services/order_sets.py) does that.
See: https://hl7.org/fhir/R4/activitydefinition.html#12.23.4.3
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from app.domain.order_types import (
    ACTIVITY_CATEGORY_EXTENSION,
    LOCAL,
    ORDER_RESOURCE_TYPES,
    ORDER_TYPES,
    SNOMED,
)
from app.errors import (
    CdsHardStop,
    Issue,
    OrderSetHardStop,
    ValidationFailed,
)
from app.store import StoredResource

CATEGORY_EXT = ACTIVITY_CATEGORY_EXTENSION
ORDER_SET_INSTANCE = "urn:orders-service:order-set-instance"
#: Group selection behaviours under which applying every child is what the author meant.
APPLY_ALL = frozenset({"all", "all-or-none"})
#: R4 servicerequest-category (example binding) plus this server's order categories.
SERVICE_CATEGORIES = frozenset(
    {(SNOMED, code) for code in ("108252007", "363679005", "409063005", "409073007", "387713003")}
    | {(t.category_system, t.category_code) for t in ORDER_TYPES.values() if t.category_code}
)


@dataclass(frozen=True)
class Template:
    """One order template of a set: the action and the ActivityDefinition it points at."""

    index: int  # position among the set's templates, depth first, from 0
    path: str  # e.g. PlanDefinition.action[1] or PlanDefinition.action[0].action[2]
    action: dict[str, Any]
    definition: dict[str, Any]  # ActivityDefinition JSON
    canonical: str | None  # the ActivityDefinition's canonical, when it has one

    @property
    def kind(self) -> str:
        return str(self.definition.get("kind"))

    @property
    def concept(self) -> dict[str, Any]:
        concept = self.definition.get("productCodeableConcept") or self.definition.get("code")
        return concept if isinstance(concept, dict) else {}

    @property
    def coding(self) -> dict[str, Any]:
        codings = self.concept.get("coding") or [{}]
        return codings[0] if isinstance(codings[0], dict) else {}

    @property
    def title(self) -> str | None:
        for value in (
            self.action.get("title"),
            self.definition.get("title"),
            self.coding.get("display"),
            self.concept.get("text"),
            self.definition.get("name"),
        ):
            if isinstance(value, str) and value.strip():
                return value
        return None

    def describe(self) -> str:
        """`template 1 (CBC, 58410-2)`: what a clinician needs to find it in the set."""
        parts = [p for p in (self.title, self.coding.get("code")) if p]
        return f"template {self.index} ({', '.join(parts)})" if parts else f"template {self.index}"

    def detail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "templateIndex": self.index,
            "templatePath": self.path,
            "resourceType": self.kind,
        }
        if self.title:
            out["templateTitle"] = self.title
        if self.coding:
            out["templateCode"] = {
                k: self.coding[k] for k in ("system", "code", "display") if k in self.coding
            }
        return out


def canonical_of(res: StoredResource) -> str:
    """`url|version`, `url`, or the literal reference when the resource has no url."""
    url, version = res.content.get("url"), res.content.get("version")
    if not url:
        return res.reference
    return f"{url}|{version}" if version else str(url)


def walk_actions(actions: Any, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, action in enumerate(actions if isinstance(actions, list) else []):
        if not isinstance(action, dict):
            continue
        path = f"{prefix}.action[{i}]"
        yield path, action
        yield from walk_actions(action.get("action"), path)


def _refuse(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[Issue(message, path, code="not-supported")])


def check_action(action: dict[str, Any], path: str) -> None:
    if action.get("condition"):
        raise _refuse(
            "Action conditions are not evaluated by this server; an order set applies all "
            "of its templates",
            f"{path}.condition",
        )
    if action.get("dynamicValue"):
        raise _refuse("dynamicValue is not evaluated by this server", f"{path}.dynamicValue")
    if action.get("definitionUri"):
        raise _refuse(
            "definitionUri is not supported; use definitionCanonical", f"{path}.definitionUri"
        )
    behavior = action.get("selectionBehavior")
    if action.get("action") and behavior is not None and behavior not in APPLY_ALL:
        raise _refuse(
            f"selectionBehavior {behavior!r} asks the user to choose; $apply creates every "
            "template (use 'all')",
            f"{path}.selectionBehavior",
        )


def check_definition(definition: dict[str, Any], path: str) -> None:
    where = f"{path}.definitionCanonical"
    kind = definition.get("kind")
    if kind not in ORDER_RESOURCE_TYPES:
        raise _refuse(
            f"ActivityDefinition kind {kind!r} is not an order type; expected one of "
            + ", ".join(ORDER_RESOURCE_TYPES),
            where,
        )
    if definition.get("status") == "retired":
        raise _refuse("The ActivityDefinition is retired", where)
    if definition.get("dynamicValue"):
        raise _refuse("ActivityDefinition.dynamicValue is not evaluated by this server", where)


# ---------------------------------------------------------------------- building
class RequestBuilder(Protocol):
    def __call__(
        self,
        template: Template,
        *,
        patient: dict[str, Any],
        encounter: dict[str, Any] | None,
        requester: dict[str, Any] | None,
        authored: str,
    ) -> dict[str, Any]: ...


def link_request(doc: dict[str, Any], canonicals: list[str], group: dict[str, str]) -> None:
    """Tie an applied order to its set: the definitions it instantiates and the set's
    identifier (MedicationRequest.groupIdentifier, ServiceRequest.requisition)."""
    doc["instantiatesCanonical"] = canonicals
    if doc["resourceType"] == "MedicationRequest":
        doc["groupIdentifier"] = group
    elif doc["resourceType"] == "ServiceRequest":
        doc["requisition"] = group


def build_request(
    template: Template,
    *,
    patient: dict[str, Any],
    encounter: dict[str, Any] | None,
    requester: dict[str, Any] | None,
    authored: str,
) -> dict[str, Any]:
    """The draft request for one template (R4 ActivityDefinition → request mapping)."""
    ad = template.definition
    kind = template.kind
    doc: dict[str, Any] = {
        "resourceType": kind,
        "status": "draft",
        "intent": "order",
    }
    if kind == "NutritionOrder":
        doc["patient"] = patient
        if encounter:
            doc["encounter"] = encounter
        doc["dateTime"] = authored
        if requester:
            doc["orderer"] = requester
        diet: dict[str, Any] = {}
        if ad.get("code"):
            diet["type"] = [ad["code"]]
        if ad.get("timingTiming"):
            diet["schedule"] = [ad["timingTiming"]]
        if diet:
            doc["oralDiet"] = diet
        return doc

    doc["subject"] = patient
    if encounter:
        doc["encounter"] = encounter
    doc["authoredOn"] = authored
    if requester:
        doc["requester"] = requester
    for key in ("priority", "doNotPerform"):
        if key in ad:
            doc[key] = ad[key]
    role = next(
        (p["role"] for p in ad.get("participant", []) if isinstance(p, dict) and p.get("role")),
        None,
    )
    if role:
        doc["performerType"] = role

    if kind == "MedicationRequest":
        if ad.get("productReference"):
            doc["medicationReference"] = ad["productReference"]
        elif ad.get("productCodeableConcept") or ad.get("code"):
            doc["medicationCodeableConcept"] = ad.get("productCodeableConcept") or ad["code"]
        if ad.get("dosage"):
            doc["dosageInstruction"] = ad["dosage"]
        if ad.get("quantity"):
            doc["dispenseRequest"] = {"quantity": ad["quantity"]}
        return doc

    # ServiceRequest
    category = service_category(ad)
    if category:
        doc["category"] = category
    if ad.get("code"):
        doc["code"] = ad["code"]
    if ad.get("quantity"):
        doc["quantityQuantity"] = ad["quantity"]
    if ad.get("bodySite"):
        doc["bodySite"] = ad["bodySite"]
    for timing, occurrence in (
        ("timingTiming", "occurrenceTiming"),
        ("timingDateTime", "occurrenceDateTime"),
        ("timingPeriod", "occurrencePeriod"),
    ):
        if ad.get(timing):
            doc[occurrence] = ad[timing]
    if ad.get("location"):
        doc["locationReference"] = [ad["location"]]
    return doc


def service_category(ad: dict[str, Any]) -> list[dict[str, Any]]:
    """The ServiceRequest category a template carries (see the module docstring)."""
    explicit = [
        e["valueCodeableConcept"]
        for e in ad.get("extension", [])
        if isinstance(e, dict)
        and e.get("url") == CATEGORY_EXT
        and isinstance(e.get("valueCodeableConcept"), dict)
    ]
    if explicit:
        return explicit
    return [
        topic
        for topic in ad.get("topic", [])
        if isinstance(topic, dict)
        and any(
            (c.get("system"), c.get("code")) in SERVICE_CATEGORIES or c.get("system") == LOCAL
            for c in topic.get("coding", [])
            if isinstance(c, dict)
        )
    ]


def hard_stop_error(
    plan: StoredResource, blocked: list[tuple[Template, CdsHardStop]]
) -> CdsHardStop:
    names = "; ".join(t.describe() for t, _e in blocked)
    summary = f"A hard-stop alert blocks {names} of {plan.reference}; no order was created"
    details = [
        {**alert, **template.detail()}
        for template, err in blocked
        for alert in (err.details if isinstance(err.details, list) else [])
        if isinstance(alert, dict)
    ]
    issues = [Issue(summary, severity="error", code="business-rule")] + [
        Issue(
            f"{template.describe()}: {issue.message}",
            template.path,
            severity="error",
            code="business-rule",
        )
        for template, err in blocked
        for issue in err.issues
    ]
    return OrderSetHardStop(
        summary,
        details=details,
        issues=issues,
    )


@dataclass(frozen=True)
class Instance:
    """One application of a plan: what its RequestGroup and CarePlan share."""

    plan: StoredResource
    canonical: str
    identifier: dict[str, str]
    patient: dict[str, Any]
    encounter: dict[str, Any] | None
    author: dict[str, Any] | None
    authored: str


def request_group(
    instance: Instance, orders: list[tuple[Template, StoredResource]]
) -> dict[str, Any]:
    group: dict[str, Any] = {
        "resourceType": "RequestGroup",
        "instantiatesCanonical": [instance.canonical],
        "groupIdentifier": instance.identifier,
        "status": "draft",
        "intent": "order",
        "subject": instance.patient,
    }
    if instance.encounter:
        group["encounter"] = instance.encounter
    group["authoredOn"] = instance.authored
    if instance.author:
        group["author"] = instance.author
    actions = []
    for template, order in orders:
        action: dict[str, Any] = {}
        if template.title:
            action["title"] = template.title
        if template.action.get("description"):
            action["description"] = template.action["description"]
        action["resource"] = {"reference": order.reference}
        actions.append(action)
    group["action"] = actions
    return group


def care_plan(
    instance: Instance, group: StoredResource, alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [instance.identifier],
        "instantiatesCanonical": [instance.canonical],
        "status": "draft",
        "intent": "order",
    }
    title = instance.plan.content.get("title") or instance.plan.content.get("name")
    if title:
        care_plan["title"] = title
    care_plan["subject"] = instance.patient
    if instance.encounter:
        care_plan["encounter"] = instance.encounter
    care_plan["created"] = instance.authored
    if instance.author:
        care_plan["author"] = instance.author
    if alerts:
        care_plan["supportingInfo"] = [
            {"reference": f"DetectedIssue/{a['id']}", "display": _alert_display(a)} for a in alerts
        ]
    care_plan["activity"] = [{"reference": {"reference": group.reference}}]
    return care_plan


def _alert_display(issue: dict[str, Any]) -> str:
    detail = issue.get("detail")
    return detail if isinstance(detail, str) and detail else "decision support alert"
