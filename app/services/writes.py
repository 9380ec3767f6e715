"""One write path per resource kind, for every face and every Bundle entry.

Orders go to the order service (state machine, CDS gate), Tasks to fulfilment (completion
completes the order), everything else to the generic resource service. The URL id is
checked against the body id here, once, for every type, so no kind of resource can be
written under an id its body does not carry.
See: https://hl7.org/fhir/R4/http.html#update ("the id in the URL … must match")
"""

from __future__ import annotations

from typing import Any

from app.cds.engine import CdsEngine
from app.domain.endpoints import EndpointPolicy
from app.domain.ids import is_valid_fhir_id
from app.domain.offline import refuse_offline_create
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import Issue, MethodNotAllowed, ValidationFailed
from app.services.fulfilment import Fulfilment
from app.services.orders import OrderService
from app.services.resources import ResourceService, WriteResult
from app.services.subscriptions import SubscriptionService
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource


class ResourceWrites:
    def __init__(
        self, uow: UnitOfWork, engine: CdsEngine, endpoints: EndpointPolicy | None = None
    ) -> None:
        self.uow = uow
        self.engine = engine
        #: Where subscriptions may point; without one (no face passed it) only loopback in
        #: development mode would do, so default to the strictest: none at all.
        self.endpoints = endpoints or EndpointPolicy(dev_mode=False)

    def create(
        self,
        resource_type: str,
        body: Any,
        *,
        condition: str | None = None,
        reason: str | None = None,
        rid: str | None = None,
        offline: bool = False,
    ) -> WriteResult:
        """Create, optionally conditional (`If-None-Exist`). `offline`: the request came from
        a device queue (DESIGN §7), which may not create medication or referral orders."""
        if offline:
            refuse_offline_create(resource_type, body)
        if resource_type == "Task":
            raise MethodNotAllowed("Tasks are created by activating an order ($activate)")
        service = ResourceService(self.uow)
        if resource_type == "Subscription":
            subscriptions = SubscriptionService(self.uow, self.endpoints)
            if condition:
                msg = "Conditional create is not supported for Subscription"
                raise ValidationFailed(msg, issues=[Issue(msg, "If-None-Exist")])
            return WriteResult(subscriptions.create(body, rid=rid, reason=reason), created=True)
        if resource_type in ORDER_RESOURCE_TYPES:
            orders = OrderService(self.uow, self.engine)

            def create_order(rtype: str, doc: Any, order_id: str | None) -> StoredResource:
                return orders.create(rtype, doc, rid=order_id, reason=reason).order

            if condition:
                return service.conditional_create(
                    resource_type, body, condition, rid=rid, reason=reason, create_fn=create_order
                )
            return WriteResult(create_order(resource_type, body, rid), created=True)
        if condition:
            return service.conditional_create(
                resource_type, body, condition, rid=rid, reason=reason
            )
        return WriteResult(
            service.create(resource_type, body, rid=rid, reason=reason), created=True
        )

    def put(
        self,
        resource_type: str,
        rid: str,
        body: Any,
        *,
        if_match: int | None,
        reason: str | None,
        offline: bool = False,
    ) -> WriteResult:
        """PUT (update, or update-as-create of a client-chosen id)."""
        check_body_id(resource_type, rid, body)
        if offline and self.uow.repo.read(resource_type, rid) is None:
            refuse_offline_create(resource_type, body)  # a PUT that creates is a create
        if resource_type == "Subscription":
            return SubscriptionService(self.uow, self.endpoints).update(
                rid, body, if_match=if_match, reason=reason
            )
        if resource_type in ORDER_RESOURCE_TYPES:
            result, created = OrderService(self.uow, self.engine).put_order(
                resource_type, rid, body, if_match=if_match, reason=reason
            )
            return WriteResult(result.order, created=created)
        if resource_type == "Task":  # Tasks are created by activation only (404 otherwise)
            task = Fulfilment(self.uow).update_task(rid, body, if_match=if_match, reason=reason)
            return WriteResult(task, created=False)
        return ResourceService(self.uow).update(
            resource_type, rid, body, if_match=if_match, reason=reason
        )


def check_body_id(resource_type: str, rid: str, body: Any) -> None:
    """The URL id must be a valid FHIR id and equal the body's `id`."""
    if not is_valid_fhir_id(rid):
        raise ValidationFailed(f"Invalid id {rid!r}", issues=[Issue("Invalid id", "id")])
    if isinstance(body, dict) and body.get("id") != rid:
        msg = f"Resource id {body.get('id')!r} does not match the URL id {rid!r}"
        raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.id")])
