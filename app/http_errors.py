"""Errors raised before any blueprint claims the request (unknown path, wrong method, body
too large): answered in the shape of the face the path belongs to, never as HTML."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from app.errors import AppError, MethodNotAllowed, PayloadTooLarge, RouteNotFound


def as_app_error(err: HTTPException) -> AppError:
    """A werkzeug HTTP error as the typed error every face knows how to render."""
    if err.code == 413:
        return PayloadTooLarge("The request body is larger than 1 MiB")
    if err.code == 405:
        allowed = getattr(err, "valid_methods", None) or []
        headers = {"Allow": ", ".join(sorted(allowed))} if allowed else {}
        return MethodNotAllowed("Method not allowed on this path", headers=headers)
    if err.code == 404:
        return RouteNotFound("No such endpoint")
    generic = AppError(err.description or "Request failed")
    return generic


def init_app(app: Flask) -> None:
    from app.fhir.routes import render_error as fhir_error
    from app.legacy_api.http import legacy_error

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        app_error = as_app_error(err)
        if request.path.startswith("/fhir/"):
            resp = fhir_error(app_error)
        else:
            resp = legacy_error(app_error)
        if err.code and app_error.status == 500:
            resp.status_code = err.code
        return resp
