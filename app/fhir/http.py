"""HTTP details of the FHIR RESTful API that are not specific to one interaction.

Content negotiation (JSON only), `Prefer`, `If-Match`, ETag/Last-Modified and `_elements`.
See: https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

import orjson

from app.auth import Principal
from app.domain.numbers import parse_etag_version
from app.errors import Issue, NotAcceptable, UnsupportedMediaType, ValidationFailed
from app.web import json_input

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir"}
FORMAT_ALIASES = {"json", *JSON_TYPES}
ACCEPT_ANY = {"*/*", "application/*", *JSON_TYPES}
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


@dataclass
class FhirRequest:
    """A framework-free request record (medplum fhir-router style)."""

    method: str
    segments: list[str]
    params: list[tuple[str, str]]
    headers: Mapping[str, str]  # keys lower-case
    body: bytes
    base_url: str
    principal: Principal | None = None
    #: Set for GET entries of a transaction: they run inside the transaction's unit of work.
    uow: Any = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass
class FhirResponse:
    status: int
    #: A JSON object, or a stored document's text passed through untouched (orjson.Fragment).
    body: dict[str, Any] | orjson.Fragment | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def negotiate(req: FhirRequest) -> None:
    """406 unless the client accepts JSON; 415 unless a body is JSON (or a search form)."""
    fmt = req.param("_format")
    if fmt is not None and _media(fmt) not in FORMAT_ALIASES:
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks JSON only")
    accept = req.header("accept")
    if fmt is None and accept:
        offered = {_media(part) for part in accept.split(",") if part.strip()}
        if not offered & ACCEPT_ANY:
            raise NotAcceptable(f"Cannot produce {accept}; this server speaks {FHIR_JSON}")
    if req.method in ("POST", "PUT") and req.body:
        ctype = _media(req.header("content-type") or "")
        is_search = req.segments[-1:] == ["_search"]
        if ctype not in JSON_TYPES and not (
            is_search and ctype == "application/x-www-form-urlencoded"
        ):
            raise UnsupportedMediaType(
                f"Content-Type {ctype or '(none)'} is not supported; send {FHIR_JSON}"
            )


def parse_json(body: bytes, what: str = "The body") -> Any:
    """Client JSON, malformed or too deeply nested → 400 (app/web/json_input.py)."""
    return json_input.parse_json(body, what)


def prefer(req: FhirRequest) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (req.header("prefer") or "").split(","):
        for token in part.split(";"):
            key, _, value = token.strip().partition("=")
            if key:
                out[key.lower()] = value.strip().strip('"').lower()
    return out


def if_match(req: FhirRequest) -> int | None:
    raw = req.header("if-match")
    if raw is None:
        return None
    version = parse_etag_version(raw)
    if version is None:
        raise ValidationFailed(
            f'If-Match {raw!r} is not a version ETag like W/"3"',
            issues=[Issue("Malformed If-Match", "If-Match")],
        )
    return version


def resource_headers(resource: Any, location: str | None = None) -> dict[str, str]:
    headers = {
        "ETag": f'W/"{resource.version_id}"',
        "Last-Modified": format_datetime(resource.last_updated, usegmt=True),
    }
    if location:
        headers["Location"] = location
    return headers


def apply_elements(resource: dict[str, Any], elements: list[str] | None) -> dict[str, Any]:
    """`_elements`: keep the listed top-level elements plus the mandatory ones, tag SUBSETTED."""
    if not elements:
        return resource
    keep = {"resourceType", "id", "meta", *elements}
    out = {k: v for k, v in resource.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out
