"""The documents the front door shows, derived from the conformance files in capability/.

Pure functions over the CapabilityStatement and the OpenAPI document, so what the pages say
cannot drift from what the server advertises.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from app.conformance import CAPABILITY_DIR

TENANT_PARAMETER = "#/components/parameters/TenantId"
TENANT_SCHEME = "tenantHeader"


@cache
def capability_statement() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((CAPABILITY_DIR / "CapabilityStatement.json").read_bytes())
    return doc


@cache
def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((CAPABILITY_DIR / "openapi-v1.json").read_bytes())
    return doc


@dataclass(frozen=True)
class ResourceRow:
    type: str
    documentation: str
    interactions: list[str]
    search_params: list[tuple[str, str]]
    operations: list[str]
    includes: list[str]


def capability_rows() -> list[ResourceRow]:
    """One row per resource type: interactions, search parameters, operations."""
    rows = []
    for res in capability_statement()["rest"][0]["resource"]:
        rows.append(
            ResourceRow(
                type=res["type"],
                documentation=res.get("documentation", ""),
                interactions=[i["code"] for i in res.get("interaction", [])],
                search_params=[(p["name"], p["type"]) for p in res.get("searchParam", [])],
                operations=[f"${o['name']}" for o in res.get("operation", [])],
                includes=[*res.get("searchInclude", []), *res.get("searchRevInclude", [])],
            )
        )
    return rows


def system_interactions() -> list[str]:
    return [i["code"] for i in capability_statement()["rest"][0].get("interaction", [])]


@cache
def docs_openapi() -> dict[str, Any]:
    """The /api/v1 OpenAPI document as the interactive docs use it: `X-Tenant-ID` is set
    once, beside the bearer token ("Authorize"), instead of on every operation. The contract
    document itself (`/api/v1/openapi.json`) is unchanged."""
    doc = copy.deepcopy(openapi_document())
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[TENANT_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-Tenant-ID",
        "description": "The tenant (hospital) every request is for; one of the token's tenants.",
    }
    doc["security"] = [_with_tenant(s) for s in doc.get("security", [])]
    # "Try it out" fills a parameter with its example: a list filtered by an example date
    # comes back empty and puzzles the reader. Query filters start blank here.
    schemas = doc["components"].get("schemas", {})
    params = list(doc["components"].get("parameters", {}).values())
    params += [
        p
        for item in doc.get("paths", {}).values()
        for op in item.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
    ]
    for param in params:
        if param.get("in") == "query":
            param.pop("example", None)
            param["schema"] = _without_example(param.get("schema", {}), schemas)
    for item in doc.get("paths", {}).values():
        _drop_tenant(item)
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            _drop_tenant(operation)
            if "security" in operation:
                operation["security"] = [_with_tenant(s) for s in operation["security"]]
    return doc


def _without_example(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = copy.deepcopy(schemas.get(ref.rsplit("/", 1)[1], {}))
    return {k: v for k, v in schema.items() if k not in ("example", "examples")}


def _with_tenant(requirement: dict[str, Any]) -> dict[str, Any]:
    return {**requirement, TENANT_SCHEME: []} if requirement else requirement


def _drop_tenant(node: dict[str, Any]) -> None:
    params = node.get("parameters")
    if isinstance(params, list):
        node["parameters"] = [p for p in params if p.get("$ref") != TENANT_PARAMETER]
