"""Flask glue shared by the legacy views: auth, bodies, ids, JSON responses, errors."""

from __future__ import annotations

import re
from typing import Any

import orjson
from flask import Response, request

from app.auth import Principal
from app.domain.ids import from_legacy, to_legacy
from app.domain.offline import OFFLINE_HEADER, is_offline
from app.errors import AppError, Issue, ValidationFailed
from app.legacy_api import roles
from app.runtime import get_runtime
from app.services import audit
from app.services.unit_of_work import UnitOfWork
from app.web import access, json_input
from app.web.errors import json_error, json_error_body

LEGACY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def principal(endpoint: str) -> Principal:
    """Authenticate (DESIGN §3) and apply the seed's roles for this endpoint."""
    who = get_runtime().authenticator.authenticate(
        request.headers.get("Authorization"), request.headers.get("X-Tenant-ID")
    )
    access.note_principal(who)
    roles.require(who, endpoint)
    audit.describe(interaction=roles.INTERACTION.get(endpoint, "operation"), endpoint=endpoint)
    return who


def unit_of_work(who: Principal) -> UnitOfWork:
    """GET views only read: they may run without a transaction (see app/db.Database)."""
    return UnitOfWork(get_runtime().database, who, read_only=request.method == "GET")


def body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        return {}
    return json_input.parse_json(raw)


def fhir_id(legacy_id: str, field: str = "id") -> str:
    if not LEGACY_ID.fullmatch(legacy_id):
        raise ValidationFailed(f"Invalid {field}", issues=[Issue("invalid id", field)])
    return from_legacy(legacy_id)


def offline() -> bool:
    """Was this request replayed from a device queue (DESIGN §7)?"""
    return is_offline(request.headers.get(OFFLINE_HEADER))


def json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(orjson.dumps(payload), status=status, content_type="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _with_legacy_ids(err: AppError) -> AppError:
    """Domain errors carry FHIR ids in their alert details; the legacy face shows legacy ids."""
    if isinstance(err.details, list):
        err.details = [
            {**d, "alertId": to_legacy(d["alertId"])}
            if isinstance(d, dict) and d.get("alertId")
            else d
            for d in err.details
        ]
    return err


def legacy_error(err: AppError) -> Response:
    """`{"error": {...}}` with legacy ids: the legacy face's renderer."""
    return json_error(_with_legacy_ids(err))


def legacy_error_body(err: AppError) -> dict[str, Any]:
    """The `error` object of `legacy_error`, for a batch item's result."""
    body: dict[str, Any] = json_error_body(_with_legacy_ids(err))["error"]
    return body
