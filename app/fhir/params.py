"""Reading what a client sent beyond the resource: numeric parameters, the `$acknowledge`
Parameters, and the `X-Provenance` header."""

from __future__ import annotations

from typing import Any

from app.domain.numbers import parse_count
from app.errors import Issue, ValidationFailed
from app.fhir.http import FhirRequest, parse_json


def int_param(req: FhirRequest, name: str, default: int, maximum: int) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    value = parse_count(raw)
    if value is None:
        raise ValidationFailed(
            f"{name} must be a non-negative integer", issues=[Issue("not an integer", name)]
        )
    return min(value, maximum)


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

    The header is client input like a body: a Provenance whose `reason` is not a list of
    CodeableConcepts (text a string, coding a list of Codings with string code/display) is
    400, never a 500 (issue 11, item 13).
    See: https://hl7.org/fhir/R4/provenance.html#header
    """
    raw = req.header("x-provenance")
    if not raw:
        return None
    prov = parse_json(raw.encode(), "The X-Provenance header")
    if not isinstance(prov, dict) or prov.get("resourceType", "Provenance") != "Provenance":
        raise _bad_provenance("must be a Provenance resource (a JSON object)")
    reasons = prov.get("reason", [])
    if not isinstance(reasons, list):
        raise _bad_provenance("reason must be a list of CodeableConcepts")
    texts = [_reason_text(r, i) for i, r in enumerate(reasons)]
    text = "; ".join(t for t in texts if t)
    return text or None


def _reason_text(concept: Any, index: int) -> str | None:
    where = f"reason[{index}]"
    if not isinstance(concept, dict):
        raise _bad_provenance(f"{where} must be a CodeableConcept")
    text = concept.get("text")
    codings = concept.get("coding", [])
    if text is not None and not isinstance(text, str):
        raise _bad_provenance(f"{where}.text must be a string")
    if not isinstance(codings, list) or not all(
        isinstance(c, dict) and all(isinstance(c.get(k, ""), str) for k in ("code", "display"))
        for c in codings
    ):
        raise _bad_provenance(f"{where}.coding must be a list of Codings (string code, display)")
    return text or next((c.get("display") or c.get("code") for c in codings), None)


def _bad_provenance(problem: str) -> ValidationFailed:
    message = f"X-Provenance: {problem}"
    return ValidationFailed(message, issues=[Issue(message, "X-Provenance")])
