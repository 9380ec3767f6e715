"""Flask glue for `/fhir/R4`: build a FhirRequest, authenticate, call the router, render.

Errors of every kind on `/fhir` leave as an OperationOutcome (`render_error`, registered
with the app's error handling in app/web/errors.py).
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Flask, Response, g, request

from app.errors import AppError
from app.fhir import capability
from app.fhir.http import FHIR_JSON, FhirRequest, FhirResponse
from app.fhir.outcomes import operation_outcome, status_for
from app.fhir.router import FhirRouter, FhirServices
from app.runtime import get_runtime
from app.web import access
from app.web.errors import register_face

PREFIX = "/fhir/R4"
KNOWN_OPERATIONS = frozenset({"activate", "acknowledge", "apply"})
bp = Blueprint("fhir", __name__, url_prefix=PREFIX)
access.install(bp, "fhir")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]


def _render(resp: FhirResponse) -> Response:
    body = b"" if resp.body is None else orjson.dumps(resp.body)
    out = Response(body, status=resp.status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for key, value in resp.headers.items():
        out.headers[key] = value
    return out


def render_error(err: AppError) -> Response:
    resp = FhirResponse(status_for(err), operation_outcome(err), dict(err.headers))
    return _render(resp)


def _base_url() -> str:
    configured = get_runtime().settings.public_base_url
    return (configured or request.host_url.rstrip("/")) + PREFIX


@bp.route("", defaults={"subpath": ""}, methods=METHODS, strict_slashes=False)
@bp.route("/<path:subpath>", methods=METHODS)
def dispatch(subpath: str) -> Response:
    runtime = get_runtime()
    segments = [s for s in subpath.split("/") if s]
    g.route_template = route_template(segments)
    fhir_req = FhirRequest(
        method=request.method,
        segments=segments,
        params=list(request.args.items(multi=True)),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.get_data(cache=False) if request.method in ("POST", "PUT", "PATCH") else b"",
        base_url=_base_url(),
    )
    # Conformance resources (the CapabilityStatement, OperationDefinitions) need no token.
    if segments != ["metadata"] and segments[:1] != ["OperationDefinition"]:
        fhir_req.principal = runtime.authenticator.authenticate(
            request.headers.get("Authorization"), request.headers.get("X-Tenant-ID")
        )
        access.note_principal(fhir_req.principal)
    router = FhirRouter(
        FhirServices.over(runtime.database, runtime.cds, runtime.settings.endpoint_policy)
    )
    return _render(router.handle(fhir_req))


def route_template(segments: list[str]) -> str:
    """The route as a template for metrics and logs: advertised type and operation names
    kept, ids replaced (`/fhir/R4/MedicationRequest/{id}/$activate`), so label values are
    bounded and no id ever reaches a metric."""
    cap = capability.load()
    parts: list[str] = []
    for i, seg in enumerate(segments[:4]):
        if i == 0:
            known = seg in cap.types or seg in ("metadata", "OperationDefinition")
            parts.append(seg if known else "{type}")
        elif seg.startswith("$"):
            parts.append(seg if seg[1:] in KNOWN_OPERATIONS else "{operation}")
        elif seg in ("_history", "_search"):
            parts.append(seg)
        else:
            parts.append("{vid}" if i == 3 else "{id}")
    if len(segments) > 4:
        parts.append("...")
    return "/".join([PREFIX, *parts])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    register_face(app, ("/fhir",), render_error)
