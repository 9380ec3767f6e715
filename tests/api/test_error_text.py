"""Issue 11, item 14: an unreachable identity provider is a generic 401 to the client; the
JWKS URL and the failure go to the log, with the request id."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path

import pytest

from app import create_app
from app.settings import Settings


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(kid: str) -> str:
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(b'{}')}.{_b64(b'not-a-signature')}"


def test_unreachable_identity_provider_is_a_generic_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    jwks_url = f"http://127.0.0.1:{port}/realms/secret-realm/protocol/openid-connect/certs"
    settings = Settings(
        instance_path=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        oidc_issuer="https://idp.example/realms/secret-realm",
        oidc_audience="orders-service",
        oidc_jwks_url=jwks_url,
        public_base_url="https://orders.example",
    )
    app = create_app(settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {_token('k1')}", "X-Tenant-ID": "t"}
    with caplog.at_level(logging.INFO):
        for path in ("/fhir/R4/Patient", "/api/v1/orders", "/cds-services"):
            resp = client.get(path, headers=headers)
            assert resp.status_code == 401, (path, resp.get_data(as_text=True))
            text = resp.get_data(as_text=True)
            for leak in (str(port), "secret-realm", "ConnectionError", "127.0.0.1", "http"):
                assert leak not in text, (path, text)
    logged = [r for r in caplog.records if "secret-realm" in r.getMessage()]
    assert logged, "the JWKS failure must be logged"
    assert all(getattr(r, "request_id", None) for r in logged)
    app.extensions["orders"].close()
