"""`/v1/orders`: create (idempotent), batch, get, list, and the lifecycle actions."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, request
from marshmallow import Schema

from app.domain.clock import utcnow
from app.domain.ids import from_legacy
from app.domain.lifecycle import Action
from app.errors import AppError, Issue, OfflineCreateNotAllowed, ValidationFailed
from app.legacy_api import mapping, schemas
from app.legacy_api.http import (
    body,
    fhir_id,
    json,
    legacy_error_body,
    offline,
    principal,
    unit_of_work,
)
from app.runtime import get_runtime
from app.services.idempotency import MutationGuard
from app.services.order_reads import OrderReader, OrderSnapshot
from app.services.orders import MutationKey, OrderService

bp = Blueprint("legacy_orders", __name__)
OFFLINE_FORBIDDEN = frozenset({"medication", "referral"})
REPLAYED = {"Idempotent-Replayed": "true"}


def _create_one(who: Any, raw: Any, prefix: str = "") -> tuple[int, bytes, bool]:
    """Validate, guard the client mutation key, create; returns (status, body, replayed)."""
    payload = schemas.load(schemas.CreateOrderSchema, raw, prefix=prefix)
    if offline() and payload["orderType"] in OFFLINE_FORBIDDEN:
        raise OfflineCreateNotAllowed(
            f"{payload['orderType']} orders cannot be created from an offline queue; "
            "submit them while connected"
        )
    runtime = get_runtime()
    cmid = payload.get("clientMutationId")
    guard = MutationGuard(runtime.cache, who.tenant_id, who.sub, cmid, raw) if cmid else None
    if guard is not None:
        replay = guard.begin()
        if replay is not None:
            return replay.status, replay.body, True
    try:
        with unit_of_work(who) as uow:
            resource = mapping.order_to_fhir(payload, now=utcnow())
            mutation = MutationKey(guard.db_key, guard.hash) if guard else None
            # Built from the schema-checked payload: not validated again (the mapping's
            # output is checked against the FHIR models in tests/unit/test_legacy_mapping.py).
            result = OrderService(uow, runtime.cds).create(
                resource["resourceType"], resource, mutation=mutation, validated=True
            )
            out = orjson.dumps(mapping.created_response(result.order.content, result.alerts))
    except BaseException:
        if guard is not None:
            guard.abort()
        raise
    if guard is not None:
        # Also after a replay from the database: that clears the in-flight marker.
        guard.complete(201, out)
    return 201, out, result.replayed


@bp.post("/orders")
def create() -> Response:
    who = principal("orders.create")
    status, out, replayed = _create_one(who, body())
    return Response(
        out, status=status, content_type="application/json", headers=REPLAYED if replayed else None
    )


@bp.post("/orders/batch")
def batch() -> Response:
    """207: one result per item, in order, each created or failed on its own."""
    who = principal("orders.batch")
    offline()  # a malformed X-Offline-Queued-At is the request's fault (400), not each item's
    envelope = schemas.load(schemas.BatchSchema, body())
    results: list[dict[str, Any]] = []
    for index, item in enumerate(envelope["orders"]):
        try:
            _status, out, _replayed = _create_one(who, item, prefix=f"orders[{index}]")
        except AppError as err:
            results.append(
                {
                    "index": index,
                    "success": False,
                    "error": legacy_error_body(err),
                }
            )
            continue
        created = orjson.loads(out)
        results.append(
            {
                "index": index,
                "orderId": created["orderId"],
                "status": created["status"],
                "success": True,
            }
        )
    return json({"results": results}, 207)


@bp.get("/orders/<order_id>")
def get(order_id: str) -> Response:
    who = principal("orders.get")
    with unit_of_work(who) as uow:
        snap = OrderReader(uow).snapshot(fhir_id(order_id, "orderId"))
    return json(_full(snap))


def _full(snap: Any) -> dict[str, Any]:
    history = mapping.history_entries(snap.versions, snap.provenance)
    return mapping.order_from_fhir(
        snap.order.content, alerts=snap.alerts, task=snap.task, history=history
    )


@bp.get("/orders")
def list_orders() -> Response:
    who = principal("orders.list")
    query = schemas.load(schemas.OrderListQuerySchema, request.args.to_dict())
    if query.get("patientId") is None and "ADMIN" not in who.roles:
        raise ValidationFailed("patientId is required", issues=[Issue("required", "patientId")])
    with unit_of_work(who) as uow:
        page = OrderReader(uow).page(
            mapping.order_searches(query), page=query["page"], page_size=query["pageSize"]
        )
    items = [_summary(snap) for snap in page.items]
    return json(
        {"items": items, "page": query["page"], "pageSize": query["pageSize"], "total": page.total}
    )


def _summary(snap: OrderSnapshot) -> dict[str, Any]:
    """A list item: the full order without its history (GET /v1/orders/:id has that)."""
    item = mapping.order_from_fhir(
        snap.order.content, alerts=snap.alerts, task=snap.task, created_at=snap.created_at
    )
    item.pop("history", None)
    return item


@bp.post("/orders/<order_id>/activate")
def activate(order_id: str) -> Response:
    who = principal("orders.activate")
    data = schemas.load(schemas.ActivateSchema, body())
    return _transition(who, order_id, Action.ACTIVATE, data.get("version"), None)


def _transition(
    who: Any, order_id: str, action: Action, version: int | None, reason: str | None
) -> Response:
    with unit_of_work(who) as uow:
        service = OrderService(uow, get_runtime().cds)
        order = service.locate(fhir_id(order_id, "orderId"))
        result = service.transition(
            order.resource_type, order.id, action, expected_version=version, reason=reason
        )
    return json(mapping.mutation_response(result.order.content))


#: The PUT lifecycle endpoints of the seed: path → (action, body schema).
CHANGES: dict[str, tuple[Action, type[Schema]]] = {
    "cancel": (Action.CANCEL, schemas.CancelSchema),
    "hold": (Action.HOLD, schemas.HoldSchema),
    "resume": (Action.RESUME, schemas.ResumeSchema),
    "correction": (Action.CORRECTION, schemas.CorrectionSchema),
}


def change(order_id: str, action: str) -> Response:
    """cancel / hold / resume / correction, each with the current `version`."""
    who = principal(f"orders.{action}")
    domain_action, schema = CHANGES[action]
    data = schemas.load(schema, body())
    return _transition(who, order_id, domain_action, data["version"], data.get("reason"))


for _name in CHANGES:  # one explicit rule each, so 405/Allow and OPTIONS tell the truth
    bp.add_url_rule(
        f"/orders/<order_id>/{_name}",
        f"change_{_name}",
        change,
        methods=["PUT"],
        defaults={"action": _name},
    )


@bp.post("/orders/<order_id>/cds-alerts/<alert_id>/acknowledge")
def acknowledge(order_id: str, alert_id: str) -> Response:
    who = principal("orders.acknowledge")
    data = schemas.load(schemas.AcknowledgeSchema, body())
    with unit_of_work(who) as uow:
        service = OrderService(uow, get_runtime().cds)
        order = service.locate(fhir_id(order_id, "orderId"))
        result = service.acknowledge(
            order.resource_type,
            order.id,
            from_legacy(fhir_id(alert_id, "alertId")),
            data["reason"],
            expected_version=data["version"],
        )
    return json(mapping.acknowledge_response(result.alerts[0], result.order.content))
