"""The FHIR side of `PlanDefinition/[id]/$apply` (OperationDefinition plandefinition-apply).

Reads the R4 input Parameters and checks SMART scopes for what the operation wrote; the
work itself is `app/services/order_sets.py`. The router's handler glues the two together.

R4 inputs used: `subject` (1..*, string: `Patient/<id>`; this server applies a set to one
patient at a time), `encounter` (0..1, string: `Encounter/<id>`) and `practitioner` (0..1,
string, e.g. `Practitioner/<id>`: the orders' requester). A `valueReference` is accepted
too. The other R4 inputs (organization, userType, userLanguage, userTaskContext, setting,
settingContext) do not change what is ordered and are ignored.
See: https://hl7.org/fhir/R4/plandefinition-operation-apply.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.auth import Principal
from app.auth.scopes import scope_allows
from app.errors import Forbidden, Issue, ValidationFailed
from app.services.order_sets import ApplyResult
from app.store.search.extract import parse_reference


@dataclass(frozen=True)
class ApplyParameters:
    patient_id: str
    encounter_id: str | None = None
    practitioner: str | None = None


def _value(param: dict[str, Any]) -> str | None:
    ref = param.get("valueReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        return str(ref["reference"])
    value = param.get("valueString")
    return value if isinstance(value, str) else None


def _reference(
    values: list[str], name: str, rtype: str, problems: list[Issue], *, required: bool
) -> str | None:
    where = f"Parameters.parameter[{name}]"
    if not values:
        if required:
            problems.append(Issue(f"{name} is required ({rtype}/<id>)", where, code="required"))
        return None
    if len(values) > 1:
        problems.append(Issue(f"Give one {name}; this server applies a set to one {rtype}", where))
        return None
    parsed = parse_reference(values[0].strip())
    if parsed is None or parsed[0] != rtype or not parsed[1]:
        problems.append(Issue(f"{name} must be a reference {rtype}/<id>", where))
        return None
    return parsed[1]


def apply_parameters(body: Any) -> ApplyParameters:
    """The inputs of `$apply` from a Parameters resource; 400 listing every problem."""
    params = body.get("parameter") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Parameters"
        or not isinstance(params, list)
    ):
        msg = "Expected a Parameters resource with subject (Patient/<id>)"
        raise ValidationFailed(msg, issues=[Issue(msg, "Parameters")])
    values: dict[str, list[str]] = {}
    problems: list[Issue] = []
    for p in params:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        value = _value(p)
        if p["name"] in ("subject", "encounter", "practitioner"):
            if value is None or not value.strip():
                problems.append(
                    Issue(
                        f"{p['name']} needs a valueString (or valueReference)",
                        f"Parameters.parameter[{p['name']}]",
                    )
                )
                continue
            values.setdefault(p["name"], []).append(value)
    patient = _reference(values.get("subject", []), "subject", "Patient", problems, required=True)
    encounter = _reference(
        values.get("encounter", []), "encounter", "Encounter", problems, required=False
    )
    practitioner = values.get("practitioner", [])
    if len(practitioner) > 1:
        problems.append(
            Issue("Give at most one practitioner", "Parameters.parameter[practitioner]")
        )
    elif practitioner and parse_reference(practitioner[0].strip()) is None:
        problems.append(
            Issue(
                "practitioner must be a reference such as Practitioner/<id>",
                "Parameters.parameter[practitioner]",
            )
        )
    if problems or patient is None:
        raise ValidationFailed("Invalid $apply parameters", issues=problems)
    return ApplyParameters(patient, encounter, practitioner[0].strip() if practitioner else None)


def check_written_scopes(principal: Principal, result: ApplyResult) -> None:
    """SMART scopes must allow creating what `$apply` wrote (raise inside the unit of work,
    so a refusal rolls everything back)."""
    written = {"RequestGroup", *(o.resource_type for o in result.orders)}
    for rtype in sorted(written):
        if not scope_allows(principal.scopes, rtype, "create", principal.patient_id is not None):
            raise Forbidden(f"The token's scopes do not allow create on {rtype}")
