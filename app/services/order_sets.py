"""Order sets: `PlanDefinition/[id]/$apply` turns an order-set template into draft orders.

An order set is a PlanDefinition (DESIGN §1). Each `action[]` that carries a
`definitionCanonical` is one order template: it points at an ActivityDefinition, either
contained in the PlanDefinition (`#id`) or stored on this server (`ActivityDefinition/<id>`,
optionally `|version`, which is ignored). `ActivityDefinition.kind` says which request it
becomes: MedicationRequest, ServiceRequest or NutritionOrder. Actions may be grouped under
other actions (sections of an order set); groups are walked depth first.

Applying a set for a patient (and optionally an encounter):

- builds one draft request per template with the R4 ActivityDefinition → request mapping
  (https://hl7.org/fhir/R4/activitydefinition.html#mapping), plus `status` draft, `intent`
  order, subject/patient, encounter, authoredOn now, and `instantiatesCanonical` = the
  PlanDefinition's canonical (`url`, or `url|version`, or `PlanDefinition/<id>` when it has
  no url) followed by the ActivityDefinition's canonical when it has one;
- creates every request through `OrderService.create`, so each one gets the same checks as a
  single order (role, validation, patient exists and is alive, encounter active, order-select
  decision support, DetectedIssues, Provenance);
- stores a RequestGroup (draft, intent order, one action per order with `resource` → the
  order) and records Provenance for it;
- returns the R4 result of `$apply`, a CarePlan whose `activity[0].reference` points at the
  RequestGroup.

Decisions (also in docs/decisions.md, "Order sets are applied, not previewed"):

- **The CarePlan is returned, not stored.** This server has no CarePlan type (the
  CapabilityStatement does not list it); the RequestGroup is the stored record of the
  instantiation and the orders are the clinical record. The CarePlan has no id; it carries
  the group identifier so a client can correlate it with the RequestGroup.
- **Stored, not transient.** The CPG `$apply` returns a transient proposal; here applying an
  order set is order entry (the legacy `instantiate` creates orders), so the drafts,
  RequestGroup, DetectedIssues and Provenance are stored in the caller's unit of work.
- **All or nothing.** If any template hits a hard-stop, the error (422 CDS_HARD_STOP,
  `OrderSetHardStop`, which does not keep writes) names every blocked template — its index,
  the action path, title and code — and lists each blocked template's alerts in `details`;
  nothing at all is stored. The remaining templates are still checked so the clinician sees
  every blocking problem at once.
- **One group identifier** (`urn:orders-service:order-set-instance|<RequestGroup id>`) ties
  the instantiation together: RequestGroup.groupIdentifier, MedicationRequest.groupIdentifier,
  ServiceRequest.requisition and CarePlan.identifier. NutritionOrder has no such element.
- **Alerts** from all created orders are aggregated (`ApplyResult.alerts`, DetectedIssue
  JSON). The CarePlan lists them in `supportingInfo` so a FHIR client sees them without
  another query.
- **ServiceRequest category** comes from the ActivityDefinition: the extension
  `urn:orders-service:activitydefinition-category` (valueCodeableConcept, repeatable) when
  present, otherwise every `topic` that carries a known order category (the codes of
  app/domain/order_types.py and the R4 servicerequest-category value set). Nothing is
  guessed from the code system.
- **What is refused, not ignored** (400 VALIDATION_ERROR naming the element): templates this
  server cannot apply faithfully — applicability `condition`s and `dynamicValue`s (no
  expression engine here), groups whose `selectionBehavior` asks the user to choose,
  `definitionUri`, unresolvable definitions, kinds other than the three order types, and a
  retired PlanDefinition or ActivityDefinition. A set with no template is refused too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from app.cds.engine import CdsEngine
from app.domain import access
from app.domain.clock import format_instant, utcnow
from app.domain.ids import new_id
from app.domain.order_types import ACTIVITY_CATEGORY_EXTENSION, LOCAL, ORDER_TYPES, SNOMED
from app.errors import (
    CdsHardStop,
    Issue,
    OrderSetHardStop,
    OrderSetNotFound,
    ValidationFailed,
)
from app.services.orders import OrderService
from app.services.resources import ResourceService
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.extract import parse_reference

CATEGORY_EXT = ACTIVITY_CATEGORY_EXTENSION
ORDER_SET_INSTANCE = "urn:orders-service:order-set-instance"
REQUEST_KINDS = ("MedicationRequest", "ServiceRequest", "NutritionOrder")
#: Group selection behaviours under which applying every child is what the author meant.
APPLY_ALL = frozenset({"all", "all-or-none"})
#: R4 servicerequest-category (example binding) plus this server's order categories.
SERVICE_CATEGORIES = frozenset(
    {(SNOMED, code) for code in ("108252007", "363679005", "409063005", "409073007", "387713003")}
    | {(t.category_system, t.category_code) for t in ORDER_TYPES.values() if t.category_code}
)


@dataclass
class ApplyResult:
    care_plan: dict[str, Any]  # R4 CarePlan JSON, not stored
    request_group: StoredResource
    orders: list[StoredResource]
    alerts: list[dict[str, Any]]  # DetectedIssue JSON of every created order


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


class OrderSetService:
    def __init__(self, uow: UnitOfWork, engine: CdsEngine) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.principal = uow.principal
        self.orders = OrderService(uow, engine)

    def apply(
        self,
        plan_id: str,
        *,
        patient_id: str,
        encounter_id: str | None,
        practitioner: str | None = None,
        reason: str | None = None,
        build: RequestBuilder | None = None,
    ) -> ApplyResult:
        """Instantiate the order set for a patient: draft orders + RequestGroup, all or nothing.

        `practitioner` (a reference such as `Practitioner/1`) becomes the orders' requester
        and the RequestGroup's author. `reason` goes into every Provenance written. `build`
        replaces the R4 ActivityDefinition → request mapping (the legacy face builds orders
        from its own templates exactly as it builds a single order).
        """
        access.require(self.principal, access.Permission.ORDER_WRITE)
        plan = self.repo.read("PlanDefinition", plan_id)
        if plan is None:
            raise OrderSetNotFound(f"PlanDefinition/{plan_id} not found")
        if plan.content.get("status") == "retired":
            msg = f"{plan.reference} is retired; it cannot be applied"
            raise ValidationFailed(msg, issues=[Issue(msg, "PlanDefinition.status")])
        templates = self.templates(plan)
        plan_canonical = canonical_of(plan)
        group_id = new_id("RequestGroup")
        group_identifier = {"system": ORDER_SET_INSTANCE, "value": group_id}
        authored = format_instant(utcnow())
        patient = {"reference": f"Patient/{patient_id}"}
        encounter = {"reference": f"Encounter/{encounter_id}"} if encounter_id else None
        author = {"reference": practitioner} if practitioner else None
        why = reason or f"order set {plan.reference} applied"

        orders: list[tuple[Template, StoredResource]] = []
        alerts: list[dict[str, Any]] = []
        blocked: list[tuple[Template, CdsHardStop]] = []
        for template in templates:
            body = (build or build_request)(
                template,
                patient=patient,
                encounter=encounter,
                requester=author,
                authored=authored,
            )
            _link(
                body,
                [plan_canonical, *([template.canonical] if template.canonical else [])],
                group_identifier,
            )
            try:
                result = self.orders.create(template.kind, body, reason=why)
            except CdsHardStop as err:  # nothing of this order was written; keep checking
                blocked.append((template, err))
                continue
            except ValidationFailed as err:
                raise ValidationFailed(
                    f"{plan.reference} {template.describe()}: {err.message}",
                    details=err.details,
                    issues=[
                        Issue(f"{template.describe()}: {i.message}", i.path, i.severity, i.code)
                        for i in err.issues
                    ],
                ) from err
            orders.append((template, result.order))
            alerts.extend(result.alerts)
        if blocked:
            raise _hard_stop(plan, blocked)

        instance = Instance(
            plan, plan_canonical, group_identifier, patient, encounter, author, authored
        )
        group = ResourceService(self.uow).create(
            "RequestGroup",
            _request_group(instance, orders),
            rid=group_id,
            reason=why,
        )
        care_plan = _care_plan(instance, group, alerts)
        return ApplyResult(care_plan, group, [o for _t, o in orders], alerts)

    # ------------------------------------------------------------------ templates
    def templates(self, plan: StoredResource) -> list[Template]:
        """The set's order templates in order; 400 for anything that cannot be applied."""
        found: list[Template] = []
        for path, action in _walk(plan.content.get("action"), "PlanDefinition"):
            _check_action(action, path)
            canonical = action.get("definitionCanonical")
            if canonical is None:
                continue
            definition, ad_canonical = self._definition(plan, canonical, path)
            found.append(Template(len(found), path, action, definition, ad_canonical))
        if not found:
            msg = f"{plan.reference} has no order templates (actions with definitionCanonical)"
            raise ValidationFailed(msg, issues=[Issue(msg, "PlanDefinition.action")])
        return found

    def _definition(
        self, plan: StoredResource, canonical: Any, path: str
    ) -> tuple[dict[str, Any], str | None]:
        where = f"{path}.definitionCanonical"
        definition: dict[str, Any] | None = None
        own_canonical: str | None = None
        if isinstance(canonical, str) and canonical.startswith("#"):
            definition = next(
                (
                    c
                    for c in plan.content.get("contained", [])
                    if isinstance(c, dict)
                    and c.get("resourceType") == "ActivityDefinition"
                    and c.get("id") == canonical[1:]
                ),
                None,
            )
            own_canonical = definition.get("url") if definition else None
        elif isinstance(canonical, str) and "://" not in canonical:
            parsed = parse_reference(canonical.split("|", 1)[0])
            if parsed and parsed[0] == "ActivityDefinition":
                stored = self.repo.read("ActivityDefinition", parsed[1])
                if stored is not None:
                    definition = stored.content
                    own_canonical = canonical_of(stored)
        if definition is None:
            msg = (
                f"{canonical!r} does not resolve: use a contained ActivityDefinition (#id) "
                "or ActivityDefinition/<id> stored on this server"
            )
            raise ValidationFailed(msg, issues=[Issue(msg, where, code="not-found")])
        _check_definition(definition, path)
        return definition, own_canonical


def canonical_of(res: StoredResource) -> str:
    """`url|version`, `url`, or the literal reference when the resource has no url."""
    url, version = res.content.get("url"), res.content.get("version")
    if not url:
        return res.reference
    return f"{url}|{version}" if version else str(url)


def _walk(actions: Any, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, action in enumerate(actions if isinstance(actions, list) else []):
        if not isinstance(action, dict):
            continue
        path = f"{prefix}.action[{i}]"
        yield path, action
        yield from _walk(action.get("action"), path)


def _refuse(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[Issue(message, path, code="not-supported")])


def _check_action(action: dict[str, Any], path: str) -> None:
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


def _check_definition(definition: dict[str, Any], path: str) -> None:
    where = f"{path}.definitionCanonical"
    kind = definition.get("kind")
    if kind not in REQUEST_KINDS:
        raise _refuse(
            f"ActivityDefinition kind {kind!r} is not an order type; expected one of "
            + ", ".join(REQUEST_KINDS),
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


def _link(doc: dict[str, Any], canonicals: list[str], group: dict[str, str]) -> None:
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


def _hard_stop(plan: StoredResource, blocked: list[tuple[Template, CdsHardStop]]) -> CdsHardStop:
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


def _request_group(
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


def _care_plan(
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
