"""Headers on every response that may carry patient data (issue 11, item 15).

`Cache-Control: no-store` keeps orders, patients and error details out of shared and
browser caches; `X-Content-Type-Options: nosniff` stops a browser from reading a JSON body
as HTML or script. Both are set once here, after every view and error handler of the three
faces (FHIR, legacy, CDS Hooks), so no route can forget them. The CapabilityStatement and
the OpenAPI document describe the server, not patients: they keep their own caching.

See: https://owasp.org/www-project-secure-headers/
"""

from __future__ import annotations

from flask import Flask, Response, request

FACE_PREFIXES = ("/fhir/", "/api/v1/", "/v1/", "/cds-services")
#: Documents about the server itself, which may be cached.
CACHEABLE_PATHS = frozenset({"/fhir/R4/metadata", "/api/v1/openapi.json", "/v1/openapi.json"})
NO_STORE = "no-store"


def carries_patient_data(path: str) -> bool:
    return path.startswith(FACE_PREFIXES) and path.rstrip("/") not in CACHEABLE_PATHS


def _secure(response: Response) -> Response:
    path = request.path
    if path.startswith(FACE_PREFIXES):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if carries_patient_data(path):
            response.headers["Cache-Control"] = NO_STORE
    return response


def init_app(app: Flask) -> None:
    app.after_request(_secure)
