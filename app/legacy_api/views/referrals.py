"""`/v1/orders/referrals`: referral ServiceRequests with tracking from their Task."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from app.domain.order_types import order_type_of
from app.errors import OrderNotFound
from app.legacy_api import mapping, schemas
from app.legacy_api.http import fhir_id, json, principal, unit_of_work
from app.services.order_reads import OrderReader, OrderSnapshot

bp = Blueprint("legacy_referrals", __name__)


@bp.get("/orders/referrals/<order_id>")
def get(order_id: str) -> Response:
    who = principal("referrals.get")
    with unit_of_work(who) as uow:
        snap = OrderReader(uow).snapshot(fhir_id(order_id, "orderId"), ("ServiceRequest",))
    kind = order_type_of(snap.order.content)
    if kind is None or kind.name != "referral":
        raise OrderNotFound(f"Referral {order_id} not found")
    history = mapping.history_entries(snap.versions, snap.provenance)
    return json(
        mapping.order_from_fhir(
            snap.order.content, alerts=snap.alerts, task=snap.task, history=history
        )
    )


def _item(snap: OrderSnapshot) -> dict[str, Any]:
    item = mapping.order_from_fhir(
        snap.order.content, alerts=snap.alerts, task=snap.task, created_at=snap.created_at
    )
    item.pop("history", None)
    return item


@bp.get("/orders/referrals")
def list_referrals() -> Response:
    who = principal("referrals.list")
    query = schemas.load(schemas.ReferralListQuerySchema, request.args.to_dict())
    with unit_of_work(who) as uow:
        found = OrderReader(uow).referrals(
            mapping.referral_search(query),
            referral_status=query.get("referralStatus"),
            page=query["page"],
            page_size=query["pageSize"],
        )
    return json(
        {
            "items": [_item(s) for s in found.items],
            "page": query["page"],
            "pageSize": query["pageSize"],
            "total": found.total,
        }
    )
