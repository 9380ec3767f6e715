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

from dataclasses import dataclass
from typing import Any

from app.cds.engine import CdsEngine
from app.domain import access
from app.domain.clock import format_instant, utcnow
from app.domain.ids import new_id
from app.errors import (
    CdsHardStop,
    Issue,
    OrderSetNotFound,
    ValidationFailed,
)
from app.services.order_set_building import (
    CATEGORY_EXT,
    ORDER_SET_INSTANCE,
    Instance,
    RequestBuilder,
    Template,
    build_request,
    canonical_of,
    care_plan,
    check_action,
    check_definition,
    hard_stop_error,
    link_request,
    request_group,
    walk_actions,
)
from app.services.orders import OrderService
from app.services.resources import ResourceService
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.extract import parse_reference


@dataclass
class ApplyResult:
    care_plan: dict[str, Any]  # R4 CarePlan JSON, not stored
    request_group: StoredResource
    orders: list[StoredResource]
    alerts: list[dict[str, Any]]  # DetectedIssue JSON of every created order


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
            link_request(
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
            raise hard_stop_error(plan, blocked)

        instance = Instance(
            plan, plan_canonical, group_identifier, patient, encounter, author, authored
        )
        group = ResourceService(self.uow).create(
            "RequestGroup",
            request_group(instance, orders),
            rid=group_id,
            reason=why,
        )
        plan_json = care_plan(instance, group, alerts)
        return ApplyResult(plan_json, group, [o for _t, o in orders], alerts)

    # ------------------------------------------------------------------ templates
    def templates(self, plan: StoredResource) -> list[Template]:
        """The set's order templates in order; 400 for anything that cannot be applied."""
        found: list[Template] = []
        for path, action in walk_actions(plan.content.get("action"), "PlanDefinition"):
            check_action(action, path)
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
        check_definition(definition, path)
        return definition, own_canonical


__all__ = ["CATEGORY_EXT", "ORDER_SET_INSTANCE", "ApplyResult", "OrderSetService"]
