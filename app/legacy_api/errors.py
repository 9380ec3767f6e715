"""AppError → `{"error": {"code", "message", "details"}}` (seed; DESIGN §5), in one place.

The legacy face uses each error's own status (a stale version is 409 here, 412 on FHIR).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response

from app.errors import AppError


def error_body(err: AppError) -> dict[str, Any]:
    details: Any = err.details
    if details is None and err.issues:
        details = [{"field": i.path, "message": i.message} for i in err.issues]
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(err: AppError) -> Response:
    resp = Response(
        orjson.dumps(error_body(err)), status=err.status, content_type="application/json"
    )
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp
