"""The one import point for FHIR models: fhir.resources' R4B package.

fhir.resources 8 models R5 by default; its `R4B` package matches R4 (4.0.1) for every
resource this server stores (STYLE "Decisions worth settling early").

Two gaps of fhir.resources are closed here, by walking the model's own field metadata:
it does not enforce required code bindings (a `status` of "bogus" validates), and pydantic
coerces JSON types (`"yes"` becomes a boolean, `12` a dateTime). FHIR JSON allows neither.
Validation failures become one `Issue` per problem, with a FHIRPath-like path.
"""

from __future__ import annotations

import datetime as dt
import types
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from app.errors import Issue, ValidationFailed

#: Elements 1..1 in R4 that the server acts on, checked even when pydantic stops at an
#: earlier error.
REQUIRED: dict[str, tuple[str, ...]] = {
    "ServiceRequest": ("status", "intent"),
    "MedicationRequest": ("status", "intent"),
    "NutritionOrder": ("status", "intent"),
    "RequestGroup": ("status", "intent"),
    "Task": ("status", "intent"),
    "Encounter": ("status",),
    "DetectedIssue": ("status",),
    "PlanDefinition": ("status",),
    "ActivityDefinition": ("status",),
}
_STRINGS = (str, dt.date, dt.datetime, dt.time)
#: fhir.resources abbreviates some required value sets with "+" ("and more"). The full R4
#: lists for the ones we act on; any other abbreviated list is not enforced rather than
#: rejecting valid codes.
_ENCOUNTER_STATUS = frozenset(
    {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
FULL_VALUE_SETS: dict[tuple[str, str], frozenset[str]] = {
    ("Task", "status"): frozenset(
        {
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        }
    ),
    ("DetectedIssue", "status"): frozenset(
        {
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Encounter", "status"): _ENCOUNTER_STATUS,
    ("EncounterStatusHistory", "status"): _ENCOUNTER_STATUS,
}


@dataclass(frozen=True)
class _Field:
    kind: str  # bool | number | string | model | resource | any
    is_list: bool
    enum: frozenset[str] | None
    model: Any = None


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


@cache
def _fields(model: Any) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for name, info in model.model_fields.items():
        annotation = _strip_optional(info.annotation)
        is_list = get_origin(annotation) is list
        if is_list:
            annotation = _strip_optional(get_args(annotation)[0])
        base = get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation
        child = base.get_model_klass() if hasattr(base, "get_model_klass") else None
        if base is bool:
            kind = "bool"
        elif base in (int, float, Decimal):
            kind = "number"
        elif base in _STRINGS:
            kind = "string"
        elif child is not None:
            kind = "resource" if child.__name__ in ("Resource", "DomainResource") else "model"
        else:
            kind = "any"
        alias = info.alias or name
        listed = (info.json_schema_extra or {}).get("enum_values")
        enum = frozenset(listed) if listed else None
        if enum and ("+" in enum or "etc." in enum):
            enum = FULL_VALUE_SETS.get((model.__name__, alias))
        out[alias] = _Field(kind, is_list, enum, child)
    return out


def _strict(model: Any, node: dict[str, Any], path: str, issues: list[Issue]) -> None:
    fields = _fields(model)
    for key, value in node.items():
        spec = fields.get(key)
        if spec is None or value is None:
            continue
        many = spec.is_list and isinstance(value, list)
        for i, item in enumerate(value if many else [value]):
            where = f"{path}.{key}[{i}]" if many else f"{path}.{key}"
            _check(spec, item, where, issues)


def _check(spec: _Field, item: Any, where: str, issues: list[Issue]) -> None:
    if spec.kind == "bool" and not isinstance(item, bool):
        issues.append(Issue("must be a JSON boolean (true or false)", where))
    elif spec.kind == "number" and (isinstance(item, bool) or not isinstance(item, int | float)):
        issues.append(Issue("must be a JSON number", where))
    elif spec.kind == "string" and not isinstance(item, str):
        issues.append(Issue("must be a JSON string", where))
    elif spec.kind == "string" and "\x00" in item:
        issues.append(Issue("must not contain NUL characters", where))
    elif spec.enum and isinstance(item, str) and item not in spec.enum:
        allowed = ", ".join(sorted(spec.enum))
        issues.append(
            Issue(f"{item!r} is not a valid code (allowed: {allowed})", where, code="code-invalid")
        )
    elif spec.kind == "model" and isinstance(item, dict):
        _strict(spec.model, item, where, issues)
    elif spec.kind == "resource" and isinstance(item, dict):
        try:
            inner = get_fhir_model_class(str(item.get("resourceType")))
        except KeyError:
            return  # pydantic reports the unknown resource type
        _strict(inner, item, where, issues)


def _path(resource_type: str, loc: tuple[int | str, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "resource_type":
            out += ".resourceType"
        else:
            out += f".{part}"
    return out


def validate_resource(resource_type: str, body: Any) -> dict[str, Any]:
    """Check `body` is a valid `resource_type`; return it unchanged (as the client sent it).

    Raises ValidationFailed listing every problem with its path; nothing is stored.
    """
    if not isinstance(body, dict):
        raise ValidationFailed(
            "The body must be a JSON object", issues=[Issue("The body must be a JSON object")]
        )
    if body.get("resourceType") != resource_type:
        msg = f"resourceType must be {resource_type!r}, got {body.get('resourceType')!r}"
        raise ValidationFailed(msg, issues=[Issue(msg, f"{resource_type}.resourceType")])
    model = get_fhir_model_class(resource_type)
    issues: list[Issue] = []
    try:
        model.model_validate(body)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            issues.append(Issue(str(err["msg"]).split("\n")[0], _path(resource_type, err["loc"])))
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for some shapes
        issues.append(Issue(str(exc).split("\n")[0], resource_type))
    _strict(model, body, resource_type, issues)
    for element in REQUIRED.get(resource_type, ()):
        if body.get(element) is None:
            issues.append(Issue(f"{element} is required", f"{resource_type}.{element}"))
    if issues:
        # One problem per element: pydantic and the strict walk may flag the same one.
        first: dict[str | None, Issue] = {}
        for issue in issues:
            first.setdefault(issue.path, issue)
        unique = list(first.values())
        raise ValidationFailed(f"Invalid {resource_type}: {len(unique)} problem(s)", issues=unique)
    return body
