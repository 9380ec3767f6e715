"""The one import point for FHIR models: fhir.resources' R4B package.

fhir.resources 8 models R5 by default; its `R4B` package matches R4 (4.0.1) for every
resource this server stores (STYLE "Decisions worth settling early"). Validation failures
become one `Issue` per problem, with a FHIRPath-like path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from app.errors import Issue, ValidationFailed

BINDINGS_FILE = Path(__file__).resolve().parent / "bindings.json"


@cache
def _bindings() -> dict[str, dict[str, frozenset[str]]]:
    raw = orjson.loads(BINDINGS_FILE.read_bytes())
    return {
        rtype: {element: frozenset(codes) for element, codes in spec.items()}
        for rtype, spec in raw.items()
        if not rtype.startswith("_")
    }


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
    issues: list[Issue] = []
    try:
        get_fhir_model_class(resource_type).model_validate(body)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            issues.append(Issue(str(err["msg"]).split("\n")[0], _path(resource_type, err["loc"])))
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for some shapes
        issues.append(Issue(str(exc).split("\n")[0], resource_type))
    for element, codes in _bindings().get(resource_type, {}).items():
        value = body.get(element)
        if value is None:
            if element in ("status", "intent"):
                issues.append(Issue(f"{element} is required", f"{resource_type}.{element}"))
        elif value not in codes:
            issues.append(
                Issue(
                    f"{value!r} is not a valid {element} code "
                    f"(allowed: {', '.join(sorted(codes))})",
                    f"{resource_type}.{element}",
                    code="code-invalid",
                )
            )
    if issues:
        # De-duplicate: pydantic and the bindings check may both flag the same element.
        unique = list({(i.path, i.message): i for i in issues}.values())
        raise ValidationFailed(f"Invalid {resource_type}: {len(unique)} problem(s)", issues=unique)
    return body
