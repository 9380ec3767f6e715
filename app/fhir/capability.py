"""The CapabilityStatement in `capability/` is the source of truth for what the FHIR face does.

The router consults it: an interaction it does not list for a type is 405, a type it does
not list is 404. So "advertised" and "works" cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from app.conformance import CAPABILITY_DIR


@dataclass(frozen=True)
class TypeCapability:
    interactions: frozenset[str]
    search_params: frozenset[str]
    includes: frozenset[str]
    revincludes: frozenset[str]
    conditional_create: bool
    update_create: bool
    operations: frozenset[str]


@dataclass(frozen=True)
class Capability:
    statement: dict[str, Any]
    types: dict[str, TypeCapability]
    system_interactions: frozenset[str]
    operation_definitions: dict[str, dict[str, Any]]


@cache
def load() -> Capability:
    statement = orjson.loads((CAPABILITY_DIR / "CapabilityStatement.json").read_bytes())
    rest = statement["rest"][0]
    types = {
        r["type"]: TypeCapability(
            interactions=frozenset(i["code"] for i in r.get("interaction", [])),
            search_params=frozenset(p["name"] for p in r.get("searchParam", [])),
            includes=frozenset(r.get("searchInclude", [])),
            revincludes=frozenset(r.get("searchRevInclude", [])),
            conditional_create=bool(r.get("conditionalCreate")),
            update_create=bool(r.get("updateCreate")),
            operations=frozenset(op["name"] for op in r.get("operation", [])),
        )
        for r in rest["resource"]
    }
    system = frozenset(i["code"] for i in rest.get("interaction", []))
    definitions = {}
    for path in sorted(CAPABILITY_DIR.glob("OperationDefinition-*.json")):
        definition = orjson.loads(path.read_bytes())
        definitions[definition["id"]] = definition
    return Capability(statement, types, system, definitions)
