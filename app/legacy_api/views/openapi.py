"""`GET /v1/openapi.json`: the OpenAPI 3 document of this face (capability/openapi-v1.json).

Readable without a token or tenant, like the FHIR CapabilityStatement (DESIGN §8). The
document is data in `capability/`; this view only serves its bytes.
"""

from __future__ import annotations

from functools import cache

from flask import Blueprint, Response

from app.conformance import CAPABILITY_DIR

bp = Blueprint("legacy_openapi", __name__)
DOCUMENT = CAPABILITY_DIR / "openapi-v1.json"


@cache
def _document() -> bytes:
    return DOCUMENT.read_bytes()


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return Response(
        _document(),
        status=200,
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
