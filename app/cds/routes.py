"""CDS Hooks endpoints at `/cds-services`: Flask glue over app/services/decision_support.py.

Same token and `X-Tenant-ID` as the other faces (CDS Hooks clients authenticate every call,
discovery included). Errors are `{"error": {...}}` JSON with the code a client can act on.
"""

from __future__ import annotations

import logging

import orjson
from flask import Blueprint, Flask, Response, request

from app.errors import AppError, Issue, ValidationFailed
from app.runtime import get_runtime
from app.services import decision_support
from app.services.unit_of_work import UnitOfWork

log = logging.getLogger("app.cds")
bp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def _uow() -> UnitOfWork:
    runtime = get_runtime()
    principal = runtime.authenticator.authenticate(
        request.headers.get("Authorization"), request.headers.get("X-Tenant-ID")
    )
    return UnitOfWork(runtime.database, principal)


def _body() -> object:
    try:
        return orjson.loads(request.get_data(cache=False) or b"null")
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed("The body is not valid JSON", issues=[Issue(str(exc))]) from exc


@bp.get("")
def discovery() -> Response:
    with _uow():
        return _json(decision_support.discovery())


@bp.post("/<service_id>")
def call(service_id: str) -> Response:
    body = _body()
    with _uow() as uow:
        return _json(
            decision_support.DecisionSupport(uow, get_runtime().cds).call(service_id, body)
        )


@bp.post("/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    body = _body()
    with _uow() as uow:
        decision_support.DecisionSupport(uow, get_runtime().cds).feedback(service_id, body)
    return _json({})


@bp.errorhandler(AppError)
def _app_error(err: AppError) -> Response:
    body = {
        "error": {
            "code": err.code,
            "message": err.message,
            "details": [{"path": i.path, "message": i.message} for i in err.issues] or err.details,
        }
    }
    resp = _json(body, err.status)
    resp.headers.update(err.headers)
    return resp


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    log.exception("unhandled error on the CDS Hooks face")
    return _json({"error": {"code": "INTERNAL_ERROR", "message": "Internal server error"}}, 500)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
