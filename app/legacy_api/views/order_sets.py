"""`/v1/order-sets`: templates stored as PlanDefinition; instantiation is `$apply`."""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.domain.ids import to_legacy
from app.errors import OfflineCreateNotAllowed
from app.legacy_api import mapping, schemas
from app.legacy_api.http import (
    body,
    fhir_id,
    json,
    offline,
    principal,
    unit_of_work,
)
from app.runtime import get_runtime
from app.services.order_set_reads import OrderSetReader
from app.services.order_sets import OrderSetService
from app.services.resources import ResourceService

bp = Blueprint("legacy_order_sets", __name__)


@bp.post("/order-sets")
def create() -> Response:
    who = principal("order_sets.create")
    payload = schemas.load(schemas.OrderSetCreateSchema, body())
    with unit_of_work(who) as uow:
        plan = mapping.order_set_to_fhir(payload)
        stored = ResourceService(uow).create("PlanDefinition", plan, rid=plan.get("id"))
    return json(mapping.order_set_created_response(stored.content), 201)


@bp.get("/order-sets")
def list_sets() -> Response:
    """Newest first; `orderType` keeps sets holding a template of that type; `search` matches
    the name (case- and accent-insensitive, anywhere in it)."""
    who = principal("order_sets.list")
    query = schemas.load(schemas.OrderSetListQuerySchema, request.args.to_dict())
    with unit_of_work(who) as uow:
        found = OrderSetReader(uow).page(
            order_type=query.get("orderType"),
            title=query.get("search"),
            page=query["page"],
            page_size=query["pageSize"],
        )
    items = [mapping.order_set_from_fhir(r.content) for r in found.items]
    return json(
        {"items": items, "page": query["page"], "pageSize": query["pageSize"], "total": found.total}
    )


@bp.post("/order-sets/<set_id>/instantiate")
def instantiate(set_id: str) -> Response:
    who = principal("order_sets.instantiate")
    data = schemas.load(schemas.InstantiateSchema, body())
    if offline():
        raise OfflineCreateNotAllowed("Order sets cannot be instantiated from an offline queue")
    with unit_of_work(who) as uow:
        result = OrderSetService(uow, get_runtime().cds).apply(
            fhir_id(set_id, "setId"),
            patient_id=fhir_id(data["patientId"], "patientId"),
            encounter_id=fhir_id(data["encounterId"], "encounterId"),
            build=mapping.legacy_request_builder,
        )
    return json(
        {
            "orderIds": [to_legacy(o.id) for o in result.orders],
            "cdsAlerts": [mapping.alert_to_legacy(a) for a in result.alerts],
        },
        201,
    )
