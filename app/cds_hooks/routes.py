"""CDS Hooks endpoints at `/cds-services`: Flask glue over app/services/decision_support.py.

Same token and `X-Tenant-ID` as the other faces (CDS Hooks clients authenticate every call,
discovery included). Errors are the `{"error": {...}}` JSON of the other JSON face
(app/web/errors.py `json_error_body`), with the code a client can act on.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Flask, Response, request

from app.auth import Principal
from app.runtime import get_runtime
from app.services import audit, decision_support
from app.services.unit_of_work import UnitOfWork
from app.web import access, json_input
from app.web.errors import json_error, register_face

bp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")
access.install(bp, "cds-hooks")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def _principal() -> Principal:
    who = get_runtime().authenticator.authenticate(
        request.headers.get("Authorization"), request.headers.get("X-Tenant-ID")
    )
    access.note_principal(who)
    return who


def _uow() -> UnitOfWork:
    return UnitOfWork(get_runtime().database, _principal())


def _body() -> object:
    return json_input.parse_json(request.get_data(cache=False) or b"null")


@bp.get("")
def discovery() -> Response:
    """Authenticated like every call, but static: no unit of work, no database."""
    _principal()
    return _json(decision_support.discovery())


@bp.post("/<service_id>")
def call(service_id: str) -> Response:
    audit.describe(interaction="operation", endpoint=service_id[:64])
    body = _body()
    with _uow() as uow:
        return _json(
            decision_support.DecisionSupport(uow, get_runtime().cds).call(service_id, body)
        )


@bp.post("/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    audit.describe(interaction="operation", endpoint=f"{service_id[:64]}/feedback")
    body = _body()
    with _uow() as uow:
        decision_support.DecisionSupport(uow, get_runtime().cds).feedback(service_id, body)
    return _json({})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    register_face(app, ("/cds-services",), json_error)
