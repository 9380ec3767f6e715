"""The legacy face: mounted at `/api/v1` and at `/v1` (gateways that strip `/api`)."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from app.errors import AppError
from app.http_errors import as_app_error
from app.legacy_api.http import legacy_error
from app.legacy_api.views import openapi, order_sets, orders, referrals

log = logging.getLogger("app.legacy_api")
bp = Blueprint("legacy_api", __name__)
# Referrals first: `/orders/referrals` must never be read as an order id.
bp.register_blueprint(referrals.bp)
bp.register_blueprint(orders.bp)
bp.register_blueprint(order_sets.bp)
bp.register_blueprint(openapi.bp)


@bp.errorhandler(AppError)
def _app_error(err: AppError) -> Response:
    return legacy_error(err)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    return legacy_error(as_app_error(err))


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    log.exception("unhandled error on the legacy face")
    return legacy_error(AppError("Internal server error"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix="/api/v1")
    app.register_blueprint(bp, url_prefix="/v1", name="legacy_v1")
