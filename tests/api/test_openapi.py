"""The OpenAPI 3 document of `/api/v1` (capability/openapi-v1.json, DESIGN §8).

It is served without a token, it is a valid OpenAPI document, it names exactly the routes
Flask serves under `/api/v1`, and its request schemas say what the marshmallow schemas in
`app/legacy_api/schemas.py` enforce (field names, required fields, enums, lengths, ranges).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import Schema, fields, validate
from openapi_spec_validator import validate as validate_openapi

from app.errors import AppError, OfflineCreateNotAllowed
from app.legacy_api import schemas as s
from tests.conftest import TokenFactory

DOCUMENT = Path(__file__).resolve().parents[2] / "capability" / "openapi-v1.json"
METHODS = ("get", "put", "post", "delete", "patch")
PARAM = re.compile(r"\{[^}]+\}")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (and a lone `allOf: [$ref]`) to the schema they name."""
    while True:
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        elif "allOf" in node and len(node["allOf"]) == 1 and "properties" not in node:
            node = node["allOf"][0]
        else:
            return node


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method])
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    ]


# ---------------------------------------------------------------- served
@pytest.mark.parametrize("base", ["/api/v1", "/v1"])
def test_served_without_a_token(client: FlaskClient, base: str) -> None:
    response = client.get(f"{base}/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == DOCUMENT.read_bytes()
    assert response.json["openapi"].startswith("3.")


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate_openapi(document)
    assert document["openapi"] == "3.0.3"
    assert document["servers"] == [{"url": "/api/v1"}]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        **document["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert document["security"] == [{"bearerAuth": []}]


def test_every_operation_needs_token_and_tenant(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        label = f"{method.upper()} {path}"
        if path == "/openapi.json":
            assert op["security"] == [], label
            continue
        assert "security" not in op, label  # the document-wide bearer requirement applies
        params = [resolve(document, p) for p in op["parameters"]]
        tenant = [p for p in params if p["name"] == "X-Tenant-ID"]
        assert tenant and tenant[0]["in"] == "header" and tenant[0]["required"], label
        for status in ("400", "401", "403", "503"):
            assert status in op["responses"], (label, status)
        if "requestBody" in op:
            assert "413" in op["responses"], label
            body = op["requestBody"]["content"]
            assert list(body) == ["application/json"], label


def test_every_error_response_is_the_legacy_error_shape(document: dict[str, Any]) -> None:
    known = {c.code for c in _subclasses(AppError)} | {OfflineCreateNotAllowed.code}
    error = document["components"]["schemas"]["Error"]
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if status.startswith("2"):
                continue
            response = resolve(document, response)
            schema = response["content"]["application/json"]["schema"]
            assert resolve(document, schema["allOf"][0]) is error, (method, path, status)
            codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
            assert set(codes) <= known, (method, path, status, set(codes) - known)


def _subclasses(cls: type[AppError]) -> list[type[AppError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


# ---------------------------------------------------------------- routes
def _sample_path(path: str) -> str:
    return "/api/v1" + PARAM.sub("x1", path)


def test_every_flask_route_is_documented_and_vice_versa(
    app: Flask, document: dict[str, Any]
) -> None:
    adapter = app.url_map.bind("localhost")
    covered: set[tuple[str, str]] = set()
    for path, method, _op in operations(document):
        rule, _args = adapter.match(_sample_path(path), method=method.upper(), return_rule=True)
        assert rule.endpoint.startswith("legacy_api."), (method, path, rule.endpoint)
        covered.add((rule.rule, method.upper()))
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert served - covered == set(), "served under /api/v1 but not documented"
    assert covered - served == set(), "documented but not served"
    # The `/v1` mount serves exactly the same routes.
    mirrored = {
        (rule.rule.removeprefix("/v1"), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert mirrored == {(r.removeprefix("/api/v1"), m) for r, m in served}


def test_only_documented_actions_answer(
    client: FlaskClient, headers: TokenFactory, document: dict[str, Any]
) -> None:
    """`PUT /orders/<id>/<action>` is one Flask rule: only the documented actions exist."""
    documented = {
        path.rsplit("/", 1)[1]
        for path, method, _op in operations(document)
        if method == "put" and path.startswith("/orders/{orderId}/")
    }
    assert documented == {"cancel", "hold", "resume", "correction"}
    auth = headers("CLINICIAN")
    for action in ("activate", "acknowledge", "complete", "delete", "edit"):
        response = client.put(f"/api/v1/orders/ord_x1/{action}", json={}, headers=auth)
        assert response.status_code in (404, 405), action
        assert response.json["error"]["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED"), action


# ---------------------------------------------------------------- request schemas
def _check_field(
    doc: dict[str, Any], field: fields.Field, node: dict[str, Any], where: str
) -> None:
    node = resolve(doc, node)
    if isinstance(field, fields.Nested):
        if "oneOf" in node:  # order templates: checked variant by variant below
            return
        nested = field.schema
        assert isinstance(nested, Schema)
        _check_schema(doc, nested, node, where)
        return
    if isinstance(field, fields.List):
        assert node["type"] == "array", where
        for v in _validators(field, validate.Length):
            assert node.get("minItems") == v.min and node.get("maxItems") == v.max, where
        _check_field(doc, field.inner, node["items"], f"{where}[]")
        return
    if isinstance(field, s.Text):  # LegacyId, DateTimeText and FrequencyText too
        assert node["type"] == "string", where
        assert node["maxLength"] == field.max_length, where
        assert "pattern" in node, where
        return
    if isinstance(field, fields.String):
        assert node["type"] == "string", where
        choices = [v.choices for v in _validators(field, validate.OneOf)]
        assert choices and list(node["enum"]) == list(choices[0]), where
        return
    if isinstance(field, fields.Integer):
        assert node["type"] == "integer", where
        for v in _validators(field, validate.Range):
            assert node.get("minimum") == v.min and node.get("maximum") == v.max, where
        return
    if isinstance(field, s.StrictNumber):
        assert node["type"] == "number", where
        assert node["minimum"] == 0 and node["exclusiveMinimum"] is True, where
        return
    if isinstance(field, s.StrictBoolean):
        assert node["type"] == "boolean", where
        return
    if isinstance(field, fields.Dict):
        assert node["type"] == "object", where
        return
    raise AssertionError(f"{where}: no rule for {type(field).__name__}")


def _validators(field: fields.Field, kind: type) -> list[Any]:
    return [v for v in field.validators if isinstance(v, kind)]


def _writable(schema: Schema) -> dict[str, fields.Field]:
    return {
        f.data_key or name: f for name, f in schema.fields.items() if not isinstance(f, s.ReadOnly)
    }


def _check_schema(doc: dict[str, Any], schema: Schema, node: dict[str, Any], where: str) -> None:
    node = resolve(doc, node)
    assert node["type"] == "object" and node["additionalProperties"] is False, where
    wanted = _writable(schema)
    assert set(node["properties"]) == set(wanted), where
    required = {k for k, f in wanted.items() if f.required}
    assert set(node.get("required", [])) == required, where
    for key, f in wanted.items():
        _check_field(doc, f, node["properties"][key], f"{where}.{key}")


def _body_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    op = doc["paths"][path][method]
    return op["requestBody"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(
    ("path", "method", "schema"),
    [
        ("/orders/batch", "post", s.BatchSchema),
        ("/orders/{orderId}/activate", "post", s.ActivateSchema),
        ("/orders/{orderId}/cds-alerts/{alertId}/acknowledge", "post", s.AcknowledgeSchema),
        ("/orders/{orderId}/cancel", "put", s.CancelSchema),
        ("/orders/{orderId}/hold", "put", s.HoldSchema),
        ("/orders/{orderId}/resume", "put", s.ResumeSchema),
        ("/orders/{orderId}/correction", "put", s.CorrectionSchema),
        ("/order-sets", "post", s.OrderSetCreateSchema),
        ("/order-sets/{setId}/instantiate", "post", s.InstantiateSchema),
    ],
)
def test_request_bodies_match_the_marshmallow_schemas(
    document: dict[str, Any], path: str, method: str, schema: type[Schema]
) -> None:
    _check_schema(document, schema(), _body_schema(document, path, method), f"{method} {path}")


def test_activate_body_is_optional(document: dict[str, Any]) -> None:
    assert (
        document["paths"]["/orders/{orderId}/activate"]["post"]["requestBody"]["required"] is False
    )


@pytest.mark.parametrize(
    ("body", "schema", "own"),
    [
        ("CreateOrder", s.CreateOrderSchema, {"patientId", "encounterId", "clientMutationId"}),
        ("OrderTemplate", s.OrderTemplateSchema, set()),
    ],
)
def test_order_payloads_match_the_marshmallow_schemas(
    document: dict[str, Any], body: str, schema: type[Schema], own: set[str]
) -> None:
    """One variant per detail block: the shared fields plus exactly the block of its type."""
    union = resolve(document, {"$ref": f"#/components/schemas/{body}"})
    variants = [resolve(document, v) for v in union["oneOf"]]
    instance = schema()
    shared = {k: f for k, f in _writable(instance).items() if k not in s.ALL_BLOCKS}
    assert own <= set(shared)
    seen_types: list[str] = []
    for variant in variants:
        types = variant["properties"]["orderType"]["enum"]
        blocks = {s.DETAIL_BLOCKS[t] for t in types}
        assert len(blocks) == 1, types
        (block,) = blocks
        seen_types += types
        assert set(variant["properties"]) == set(shared) | {block}, types
        required = {k for k, f in shared.items() if f.required} | {block}
        assert set(variant["required"]) == required, types
        assert variant["additionalProperties"] is False
        for key, f in shared.items():
            if key != "orderType":
                _check_field(document, f, variant["properties"][key], f"{body}.{key}")
        block_schema = instance.fields[block]
        assert isinstance(block_schema, fields.Nested)
        _check_field(document, block_schema, variant["properties"][block], f"{body}.{block}")
        discriminator = union["discriminator"]["mapping"]
        assert all(discriminator[t].endswith("/" + variant["title"]) for t in types)
    assert sorted(seen_types) == sorted(s.ORDER_TYPE_NAMES)


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        ("/orders", s.OrderListQuerySchema),
        ("/order-sets", s.OrderSetListQuerySchema),
        ("/orders/referrals", s.ReferralListQuerySchema),
    ],
)
def test_query_parameters_match_the_marshmallow_schemas(
    document: dict[str, Any], path: str, schema: type[Schema]
) -> None:
    params = [resolve(document, p) for p in document["paths"][path]["get"]["parameters"]]
    query = {p["name"]: p for p in params if p["in"] == "query"}
    wanted = _writable(schema())
    assert set(query) == set(wanted), path
    for key, f in wanted.items():
        assert query[key].get("required", False) is f.required, (path, key)
        _check_field(document, f, query[key]["schema"], f"{path}?{key}")
    if "pageSize" in query:
        assert resolve(document, query["pageSize"]["schema"])["maximum"] == s.MAX_PAGE_SIZE


def test_frequency_pattern_is_the_servers(document: dict[str, Any]) -> None:
    from app.legacy_api.mapping.frequency import frequency_problem

    pattern = re.compile(document["components"]["schemas"]["Frequency"]["pattern"])
    valid = ["OD", "BD", "BID", "TDS", "TID", "QDS", "QID", "NOCTE", "STAT", "PRN", "OD PRN"]
    valid += ["od", "tds", "stat", "q4h", "Q6H prn", "Q01H", "Q99H", "Q5MIN", "Q005MIN"]
    valid += ["Q050MIN", "Q500MIN", " TDS ", "Q12H\tPRN"]
    valid += ["WEEKLY", "weekly", "QW", "qw PRN", "Q2W", "Q02W", "Q1D", "Q14D", "Q99W"]
    invalid = ["Q0H", "Q00H", "Q100H", "Q0MIN", "Q000MIN", "Q1000MIN", "ODPRN", "x", "Q4 H"]
    invalid += ["Q0W", "Q100D", "Q²H", "Q2WK", "WEEK"]
    invalid += ["STAT PRN", "PRN PRN", "", " "]
    for sample in valid + invalid:
        assert (frequency_problem(sample) is None) is (sample in valid), sample
        assert bool(pattern.search(sample)) is (sample in valid), sample
