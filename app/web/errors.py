"""Errors mapped once per face (STYLE habit 5).

The app factory installs one set of handlers; each face registers the renderer for its URL
prefix (`register_face`). A typed `AppError` goes to the renderer of the face the path
belongs to; a framework error (unknown path, wrong method, body too large, a `BadRequest`
raised anywhere, including inside a view) is first converted by `as_app_error`, the only
place that turns a werkzeug status into one of our error codes; anything else is logged
with the request id and answered as a generic 500 in the face's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from app.errors import (
    AppError,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    ValidationFailed,
)

Renderer = Callable[[AppError], Response]
log = logging.getLogger("app.errors")
_FACES = "orders.error_renderers"


def json_error_body(err: AppError) -> dict[str, Any]:
    """`{"error": {"code", "message", "details"}}` (seed; DESIGN §5): the legacy face's and
    the CDS Hooks face's shape, and the shape of paths no face owns."""
    details: Any = err.details
    if details is None and err.issues:
        details = [{"field": i.path, "message": i.message} for i in err.issues]
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def json_error(err: AppError) -> Response:
    resp = Response(
        orjson.dumps(json_error_body(err)), status=err.status, content_type="application/json"
    )
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp


class FrameworkError(AppError):
    """A werkzeug HTTP error with no typed counterpart: keeps its own status and name."""

    def __init__(self, err: HTTPException) -> None:
        super().__init__(err.description or err.name or "Request failed")
        self.status = err.code or 500  # type: ignore[misc]  # per-instance status by design
        self.code = "BAD_REQUEST" if self.status == 400 else "HTTP_ERROR"  # type: ignore[misc]


def as_app_error(err: HTTPException, max_body_bytes: int) -> AppError:
    """A werkzeug HTTP error as the typed error every face knows how to render."""
    if err.code == 413:
        return PayloadTooLarge(f"The request body is larger than {_size(max_body_bytes)}")
    if err.code == 405:
        allowed = getattr(err, "valid_methods", None) or []
        headers = {"Allow": ", ".join(sorted(allowed))} if allowed else {}
        return MethodNotAllowed("Method not allowed on this path", headers=headers)
    if err.code == 404:
        return RouteNotFound("No such endpoint")
    if err.code == 400:
        return ValidationFailed(err.description or "Bad request")
    return FrameworkError(err)


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


def register_face(app: Flask, prefixes: tuple[str, ...], render: Renderer) -> None:
    """Errors on paths under any of `prefixes` are rendered by `render`."""
    faces: list[tuple[str, Renderer]] = app.extensions.setdefault(_FACES, [])
    faces.extend((p, render) for p in prefixes)
    faces.sort(key=lambda face: len(face[0]), reverse=True)  # longest prefix wins


def _renderer(app: Flask, err: AppError) -> Renderer:
    g.error_code = err.code  # the access line's outcome (app/observability.py)
    for prefix, render in app.extensions.get(_FACES, []):
        if request.path == prefix or request.path.startswith(prefix.rstrip("/") + "/"):
            return render
    return json_error


def init_app(app: Flask, *, max_body_bytes: int) -> None:
    @app.errorhandler(AppError)
    def _app_error(err: AppError) -> Response:
        return _renderer(app, err)(err)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        typed = as_app_error(err, max_body_bytes)
        return _renderer(app, typed)(typed)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unhandled error on %s", request.path)
        generic = AppError("Internal server error")
        return _renderer(app, generic)(generic)
