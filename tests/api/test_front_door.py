"""The front door (issue 15 item 1): `/` and the docs pages, without a token, offline.

The browser test (tests/browser/) drives the interactive docs for real; these check what the
server sends: links, the docs variant of the OpenAPI document, the capability table, and
that every asset the pages load is served from here (no CDN).
"""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from app.fhir import capability


def test_the_front_door_links_every_document_without_a_token(client: FlaskClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.content_type.startswith("text/html")
    html = r.get_data(as_text=True)
    for href in (
        "/fhir/R4/metadata",
        "/cds-services",
        "/api/v1/openapi.json",
        "/docs/api",
        "/docs/fhir",
    ):
        assert f'href="{href}"' in html, href
    assert "version" in html
    # Development mode (no OIDC configured in tests) says how to mint a token.
    assert "orders-service token --role CLINICIAN --tenant demo" in html


def test_every_asset_a_page_loads_is_served_here(client: FlaskClient) -> None:
    for page in ("/", "/docs/api", "/docs/fhir"):
        html = client.get(page).get_data(as_text=True)
        srcs = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert srcs, page
        for src in srcs:
            assert src.startswith("/"), f"{page} loads {src} from elsewhere"
            r = client.get(src, buffered=True)
            assert r.status_code == 200, src
            assert len(r.data) > 100
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get("/docs/assets/..%2Fpyproject.toml").status_code == 404


def test_the_docs_variant_sets_the_tenant_once_beside_the_token(client: FlaskClient) -> None:
    doc = client.get("/docs/api/openapi.json").get_json()
    contract = client.get("/api/v1/openapi.json").get_json()
    scheme = doc["components"]["securitySchemes"]["tenantHeader"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-Tenant-ID"}
    assert {"bearerAuth": [], "tenantHeader": []} in doc["security"]
    refs = [
        p.get("$ref")
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
    ]
    assert "#/components/parameters/TenantId" not in refs
    assert doc["paths"].keys() == contract["paths"].keys()
    # The contract document itself still declares the header on its operations.
    assert any(
        p.get("$ref") == "#/components/parameters/TenantId"
        for p in contract["paths"]["/orders"]["get"]["parameters"]
    )


def test_the_capability_table_lists_every_type_interaction_and_parameter(
    client: FlaskClient,
) -> None:
    html = client.get("/docs/fhir").get_data(as_text=True)
    for rtype, tcap in capability.load().types.items():
        row = re.search(rf'<tr id="res-{rtype}">(.*?)</tr>', html, re.S)
        assert row, rtype
        cells = row.group(1)
        for interaction in tcap.interactions:
            assert f"<code>{interaction}</code>" in cells, (rtype, interaction)
        for name in tcap.search_params:
            assert f">{name}</code>" in cells, (rtype, name)
        for op in tcap.operations:
            assert f"<code>${op}</code>" in cells, (rtype, op)
