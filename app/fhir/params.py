"""Reading what a client sent beyond the resource: numeric parameters, the `$acknowledge`
Parameters, and the `X-Provenance` header."""

from __future__ import annotations

from typing import Any

from app.errors import Issue, ValidationFailed
from app.fhir.http import FhirRequest, parse_json


def int_param(req: FhirRequest, name: str, default: int, maximum: int) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValidationFailed(
            f"{name} must be a non-negative integer", issues=[Issue("not an integer", name)]
        )
    return min(int(raw), maximum)


def acknowledge_params(body: Any) -> tuple[str, str]:
    """Read `alert` (Reference or id) and `reason` from a Parameters resource."""
    params = body.get("parameter") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Parameters"
        or not isinstance(params, list)
    ):
        raise ValidationFailed(
            "Expected a Parameters resource",
            issues=[Issue("Expected a Parameters resource", "Parameters")],
        )
    values: dict[str, str] = {}
    for p in params:
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        ref = (
            (p.get("valueReference") or {}).get("reference")
            if isinstance(p.get("valueReference"), dict)
            else None
        )
        value = ref or p.get("valueString") or p.get("valueId")
        if isinstance(name, str) and isinstance(value, str):
            values[name] = value
    problems = [
        Issue(f"{n} is required", f"Parameters.parameter[{n}]")
        for n in ("alert", "reason")
        if not values.get(n, "").strip()
    ]
    if problems:
        raise ValidationFailed("alert and reason are required", issues=problems)
    return values["alert"].removeprefix("DetectedIssue/"), values["reason"]


def provenance_reason(req: FhirRequest) -> str | None:
    """The reason from an `X-Provenance` header, if the client sent one.

    See: https://hl7.org/fhir/R4/provenance.html#header
    """
    raw = req.header("x-provenance")
    if not raw:
        return None
    prov = parse_json(raw.encode())
    if not isinstance(prov, dict):
        return None
    reasons = prov.get("reason") or []
    texts = [
        r.get("text")
        or next((c.get("display") or c.get("code") for c in r.get("coding", [])), None)
        for r in reasons
        if isinstance(r, dict)
    ]
    text = "; ".join(t for t in texts if t)
    return text or None
