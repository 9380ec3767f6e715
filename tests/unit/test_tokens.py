"""Token verification (DESIGN §3): every failure maps to exactly one typed error.

Development-mode tests sign with the instance's dev key (`mint_token`), then bend one claim or
header at a time. The JWKS tests run a real HTTP server on loopback so fetching, rotation and
the refetch rate limit are exercised end to end, counting the requests the IdP actually sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.auth import Principal
from app.auth._jose import JsonWebKey, JsonWebSignature, Key
from app.auth.devkeys import (
    KEY_FILE,
    dev_public_jwks,
    load_or_create_dev_key,
    mint_token,
)
from app.auth.jwks import JwksCache
from app.auth.tokens import LEEWAY_SECONDS, Authenticator
from app.errors import (
    Forbidden,
    ModuleNotEntitled,
    TenantForbidden,
    TenantRequired,
    Unauthenticated,
)
from app.settings import Settings

CLIENT_ID = "orders-web"


# -- helpers --------------------------------------------------------------------------------


class FakeClock:
    """A settable clock, so leeway and refresh-interval boundaries are tested exactly."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64url(json.dumps(obj).encode())


def sign(key: Key, claims: Any, *, alg: str = "RS256", kid: str | None = None) -> str:
    """A compact JWS over `claims` (any JSON, or raw bytes) with an explicit header."""
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signed: bytes = JsonWebSignature([alg]).serialize_compact(header, payload, key)
    return signed.decode("ascii")


def new_key(kty: str, kid: str) -> Key:
    """A fresh private key carrying `kid`."""
    size: str | int = "P-256" if kty == "EC" else 2048
    generated = JsonWebKey.generate_key(kty, size, is_private=True)
    return JsonWebKey.import_key(generated.as_dict(is_private=True, kid=kid))


def public_jwk(key: Key, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = key.as_dict(is_private=False)
    doc.update(extra)
    return doc


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return result


# -- development-mode fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def instance_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One instance folder per module: an RSA key is slow to generate, and reuse is the point."""
    return tmp_path_factory.mktemp("instance")


@pytest.fixture
def settings(instance_path: Path) -> Settings:
    return Settings(instance_path=instance_path, database_url="sqlite://", oidc_client_id=CLIENT_ID)


@pytest.fixture
def clock() -> FakeClock:
    # Whole seconds, near real time (mint_token stamps iat/nbf/exp from the real clock).
    return FakeClock(float(int(time.time())))


@pytest.fixture
def auth(settings: Settings, clock: FakeClock) -> Authenticator:
    return Authenticator(settings, clock=clock)


@pytest.fixture
def dev_key(settings: Settings) -> Key:
    return load_or_create_dev_key(settings.instance_path)


def bearer(token: str) -> str:
    return f"Bearer {token}"


# -- happy path -----------------------------------------------------------------------------


def test_valid_token_gives_full_principal(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(
        settings,
        sub="u-1",
        roles=("clinician", "PRESCRIBER"),
        tenants=("demo", "acme"),
        scope="openid user/MedicationRequest.read patient/*.rs",
    )
    principal = auth.authenticate(bearer(token), "acme")
    assert principal == Principal(
        sub="u-1",
        tenant_id="acme",
        roles=frozenset({"CLINICIAN", "PRESCRIBER"}),
        tenants=frozenset({"demo", "acme"}),
        patient_id=None,
        scopes=frozenset({"user/MedicationRequest.read", "patient/*.rs"}),
        issuer=settings.issuer,
    )


def test_scheme_is_case_insensitive_and_tenant_header_trimmed(
    settings: Settings, auth: Authenticator
) -> None:
    token = mint_token(settings)
    assert auth.authenticate(f"bearer   {token} ", " demo ").tenant_id == "demo"


def test_authenticator_construction_is_lazy(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path / "fresh", database_url="sqlite://")
    Authenticator(settings)
    assert not (settings.instance_path / KEY_FILE).exists()


# -- the Authorization header -----------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_authorization_is_401(auth: Authenticator, header: str | None) -> None:
    with pytest.raises(Unauthenticated) as info:
        auth.authenticate(header, "demo")
    assert info.value.status == 401
    assert info.value.code == "UNAUTHENTICATED"
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("template", ["Basic {t}", "Token {t}", "{t}", "Bearer", "Bearer {t} x"])
def test_non_bearer_authorization_is_401(
    settings: Settings, auth: Authenticator, template: str
) -> None:
    token = mint_token(settings)
    with pytest.raises(Unauthenticated):
        auth.authenticate(template.format(t=token), "demo")


# -- malformed and forged tokens --------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b",
        "a.b.c",
        "...",
        "a.b.c.d.e",  # JWE compact shape: not accepted
        b64json(["alg", "RS256"]) + ".e30.sig",  # header not an object
        b64url(b"\xff\xfe") + ".e30.sig",  # header not UTF-8 JSON
        b64json({"alg": "RS256", "kid": 7}) + ".e30.sig",  # kid not a string
        "é.é.é",
        b64url(b"[" * 9000) + ".e30.sig",  # nesting deep enough to exhaust the recursion limit
        "x" * 20000,
    ],
)
def test_garbage_token_is_401(auth: Authenticator, token: str) -> None:
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(token), "demo")


def test_validly_signed_non_json_or_non_object_payload_is_401(
    settings: Settings, auth: Authenticator, dev_key: Key
) -> None:
    for payload in (b"not json", b"[1, 2]", b"\xff"):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer(sign(dev_key, payload, kid=dev_key.kid)), "demo")


def test_signature_by_another_key_with_same_kid_is_401(
    settings: Settings, auth: Authenticator, dev_key: Key
) -> None:
    good = mint_token(settings)
    impostor = new_key("RSA", dev_key.kid)
    forged = sign(impostor, claims_of(good), kid=dev_key.kid)
    auth.authenticate(bearer(good), "demo")  # the claims themselves are fine
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(forged), "demo")


def test_tampered_payload_is_401(settings: Settings, auth: Authenticator) -> None:
    header, _, signature = mint_token(settings, roles=("NURSE",)).split(".")
    claims = claims_of(mint_token(settings, roles=("ADMIN",)))
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(f"{header}.{b64json(claims)}.{signature}"), "demo")


def test_unknown_kid_in_dev_mode_is_401(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings)
    key = load_or_create_dev_key(settings.instance_path)
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(sign(key, claims_of(token), kid="some-other-kid")), "demo")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_401(settings: Settings, auth: Authenticator, dev_key: Key, alg: str) -> None:
    claims = claims_of(mint_token(settings, roles=("ADMIN",)))
    unsigned = f"{b64json({'alg': alg, 'kid': dev_key.kid})}.{b64json(claims)}."
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(unsigned), "demo")


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)],
)
def test_hmac_signed_with_public_key_is_401(
    settings: Settings, auth: Authenticator, dev_key: Key, alg: str, digest: Any
) -> None:
    """The classic key-confusion attack: the public key (which anyone may hold) as HMAC secret."""
    public_pem: bytes = dev_key.as_pem(is_private=False)
    claims = claims_of(mint_token(settings, roles=("ADMIN",)))
    signing_input = f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': dev_key.kid})}.{b64json(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(f"{signing_input}.{b64url(mac)}"), "demo")


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_asymmetric_algorithms_are_401(
    settings: Settings, auth: Authenticator, dev_key: Key, alg: str
) -> None:
    """Correctly signed by the right key, but only RS256 and ES256 are accepted."""
    token = sign(dev_key, claims_of(mint_token(settings)), alg=alg, kid=dev_key.kid)
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(token), "demo")


# -- registered claims ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"iss": "https://evil.example"},
        {"iss": None},
        {"aud": "another-service"},
        {"aud": ["another-service", "yet-another"]},
        {"aud": None},
        {"exp": None},
        {"exp": "99999999999"},
        {"exp": True},
        {"exp": float("nan")},
        {"nbf": "0"},
        {"sub": None},
        {"sub": ""},
        {"sub": "dev\u0000user"},
        {"sub": "dev\nuser"},
        {"sub": "dev\ud800user"},
        {"azp": "ehr\u0000app"},
        {"client_id": "ehr\udfffapp"},
    ],
)
def test_bad_registered_claims_are_401(
    settings: Settings, auth: Authenticator, extra: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(mint_token(settings, extra_claims=extra)), "demo")


def test_audience_list_containing_ours_is_accepted(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, extra_claims={"aud": ["account", settings.audience]})
    assert auth.authenticate(bearer(token), "demo").sub == "dev-user"


def test_leeway_is_the_designed_60_seconds() -> None:
    assert LEEWAY_SECONDS == 60


@pytest.mark.parametrize(("exp_offset", "accepted"), [(-59, True), (-60, False), (-61, False)])
def test_exp_leeway(
    settings: Settings, auth: Authenticator, clock: FakeClock, exp_offset: int, accepted: bool
) -> None:
    token = mint_token(settings, extra_claims={"exp": int(clock.t) + exp_offset})
    if accepted:
        auth.authenticate(bearer(token), "demo")
    else:
        with pytest.raises(Unauthenticated, match="expired"):
            auth.authenticate(bearer(token), "demo")


@pytest.mark.parametrize(("nbf_offset", "accepted"), [(59, True), (60, True), (61, False)])
def test_nbf_leeway(
    settings: Settings, auth: Authenticator, clock: FakeClock, nbf_offset: int, accepted: bool
) -> None:
    token = mint_token(settings, extra_claims={"nbf": int(clock.t) + nbf_offset})
    if accepted:
        auth.authenticate(bearer(token), "demo")
    else:
        with pytest.raises(Unauthenticated, match="not valid yet"):
            auth.authenticate(bearer(token), "demo")


# -- tenant and entitlement -------------------------------------------------------------------


@pytest.mark.parametrize("tenant", [None, "", "  "])
def test_missing_tenant_header_is_400(
    settings: Settings, auth: Authenticator, tenant: str | None
) -> None:
    with pytest.raises(TenantRequired) as info:
        auth.authenticate(bearer(mint_token(settings)), tenant)
    assert (info.value.status, info.value.code) == (400, "TENANT_REQUIRED")


def test_token_is_checked_before_tenant_header(auth: Authenticator) -> None:
    with pytest.raises(Unauthenticated):
        auth.authenticate(None, None)


def test_tenant_id_claim_form(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, extra_claims={"tenants": None, "tenant_id": "acme"})
    assert set(claims_of(token)) >= {"tenant_id"} and "tenants" not in claims_of(token)
    assert auth.authenticate(bearer(token), "acme").tenants == frozenset({"acme"})
    with pytest.raises(TenantForbidden) as info:
        auth.authenticate(bearer(token), "demo")
    assert (info.value.status, info.value.code) == (403, "TENANT_FORBIDDEN")


def test_tenants_list_claim_form(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, tenants=("north", "south"))
    assert "tenant_id" not in claims_of(token)
    assert auth.authenticate(bearer(token), "south").tenant_id == "south"
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "west")
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "nor")  # no substring matches


def test_token_without_tenant_claims_is_forbidden(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, extra_claims={"tenants": None, "tenant_id": None})
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "demo")


def test_tenant_checked_before_entitlement(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, entitlements=())
    with pytest.raises(TenantRequired):
        auth.authenticate(bearer(token), None)
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "elsewhere")


@pytest.mark.parametrize(
    "extra",
    [
        {"entitlements": []},
        {"entitlements": None},
        {"entitlements": ["clinical.results", "clinical.orders.read"]},
        {"entitlements": "clinical.orders.extended"},
        {"entitlements": {"clinical.orders": True}},
    ],
)
def test_missing_entitlement_is_403(
    settings: Settings, auth: Authenticator, extra: dict[str, Any]
) -> None:
    with pytest.raises(ModuleNotEntitled) as info:
        auth.authenticate(bearer(mint_token(settings, extra_claims=extra)), "demo")
    assert (info.value.status, info.value.code) == (403, "MODULE_NOT_ENTITLED")


# -- roles, patient identity, scopes ----------------------------------------------------------


def test_roles_from_realm_and_client_case_insensitive(
    settings: Settings, auth: Authenticator
) -> None:
    token = mint_token(
        settings,
        roles=("clinician", "Nurse", "offline_access", "uma_authorization"),
        extra_claims={
            "resource_access": {
                CLIENT_ID: {"roles": ["prescriber", "superuser"]},
                "another-client": {"roles": ["ADMIN"]},  # not our client: ignored
            }
        },
    )
    roles = auth.authenticate(bearer(token), "demo").roles
    assert roles == frozenset({"CLINICIAN", "NURSE", "PRESCRIBER"})


def test_client_roles_ignored_without_client_id(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path, database_url="sqlite://")
    token = mint_token(
        settings, roles=(), extra_claims={"resource_access": {CLIENT_ID: {"roles": ["ADMIN"]}}}
    )
    assert Authenticator(settings).authenticate(bearer(token), "demo").roles == frozenset()


def test_malformed_role_claims_give_no_roles(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(
        settings,
        extra_claims={"realm_access": ["ADMIN"], "resource_access": {CLIENT_ID: "ADMIN"}},
    )
    assert auth.authenticate(bearer(token), "demo").roles == frozenset()


def test_patient_id_from_legacy_claim(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(settings, roles=("PATIENT",), patient_id="pat_01J8ZQ4X6R")
    principal = auth.authenticate(bearer(token), "demo")
    assert principal.patient_id == "pat-01J8ZQ4X6R"
    assert principal.is_patient_only


@pytest.mark.parametrize(
    ("fhir_user", "expected"),
    [
        ("Patient/pat-01J8ZQ4X6R", "pat-01J8ZQ4X6R"),
        ("https://ehr.example.org/fhir/R4/Patient/p.42", "p.42"),
    ],
)
def test_patient_id_from_fhir_user(
    settings: Settings, auth: Authenticator, fhir_user: str, expected: str
) -> None:
    token = mint_token(settings, roles=("patient",), extra_claims={"fhirUser": fhir_user})
    assert auth.authenticate(bearer(token), "demo").patient_id == expected


def test_practitioner_fhir_user_is_not_a_patient_id(
    settings: Settings, auth: Authenticator
) -> None:
    token = mint_token(settings, extra_claims={"fhirUser": "Practitioner/dr-1"})
    assert auth.authenticate(bearer(token), "demo").patient_id is None


@pytest.mark.parametrize(
    "extra", [{}, {"fhirUser": "Practitioner/dr-1"}, {"patient_id": "bad id!"}]
)
def test_patient_role_without_patient_identity_is_forbidden(
    settings: Settings, auth: Authenticator, extra: dict[str, Any]
) -> None:
    token = mint_token(settings, roles=("PATIENT",), extra_claims=extra)
    with pytest.raises(Forbidden):
        auth.authenticate(bearer(token), "demo")


def test_scopes_from_scp_list(settings: Settings, auth: Authenticator) -> None:
    token = mint_token(
        settings, extra_claims={"scp": ["openid", "system/Task.cruds", "launch/patient"]}
    )
    assert auth.authenticate(bearer(token), "demo").scopes == frozenset({"system/Task.cruds"})


# -- development key --------------------------------------------------------------------------


def test_dev_key_file_is_private_and_kid_stable(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path / "fresh" / "nested", database_url="sqlite://")
    first = load_or_create_dev_key(settings.instance_path)
    path = settings.instance_path / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.kid and load_or_create_dev_key(settings.instance_path).kid == first.kid
    assert not [p for p in settings.instance_path.iterdir() if p.name != KEY_FILE]


def test_dev_key_concurrent_creation_yields_one_key(tmp_path: Path) -> None:
    barrier = threading.Barrier(8, timeout=10)

    def create() -> str:
        barrier.wait()
        return str(load_or_create_dev_key(tmp_path / "inst").kid)

    with ThreadPoolExecutor(8) as pool:
        kids = set(pool.map(lambda _: create(), range(8)))
    on_disk = json.loads((tmp_path / "inst" / KEY_FILE).read_text())["kid"]
    assert kids == {on_disk}
    assert [p.name for p in (tmp_path / "inst").iterdir()] == [KEY_FILE]


def test_dev_public_jwks_has_no_private_material(settings: Settings) -> None:
    (jwk,) = dev_public_jwks(settings.instance_path)["keys"]
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_mint_token_extra_claims_override_and_delete(settings: Settings) -> None:
    claims = claims_of(
        mint_token(settings, scope="user/*.read", extra_claims={"sub": "x", "nbf": None})
    )
    assert claims["sub"] == "x" and "nbf" not in claims and claims["scope"] == "user/*.read"


def test_mint_token_refused_outside_dev_mode(tmp_path: Path) -> None:
    settings = Settings(
        instance_path=tmp_path,
        database_url="sqlite://",
        oidc_issuer="https://idp.example",
        oidc_audience="orders-service",
        oidc_jwks_url="https://idp.example/certs",
    )
    with pytest.raises(RuntimeError):
        mint_token(settings)


# -- JWKS over real HTTP ----------------------------------------------------------------------


class JwksServer:
    """A loopback IdP key endpoint whose document and status tests can change at any time."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.raw_body: bytes | None = None
        self.delay = 0.0  # seconds before answering, to make concurrent callers overlap
        self.requests = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests += 1
                time.sleep(outer.delay)
                body = outer.raw_body
                if body is None:
                    body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/realms/clinic/certs"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


ISSUER = "https://idp.example.org/realms/clinic"
AUDIENCE = "orders-service"


@pytest.fixture(scope="module")
def rsa1() -> Key:
    return new_key("RSA", "rsa-1")


@pytest.fixture(scope="module")
def rsa2() -> Key:
    return new_key("RSA", "rsa-2")


@pytest.fixture(scope="module")
def ec1() -> Key:
    return new_key("EC", "ec-1")


@pytest.fixture
def idp(rsa1: Key) -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.document = {"keys": [public_jwk(rsa1, use="sig", alg="RS256")]}
        yield server


@pytest.fixture
def oidc_settings(tmp_path: Path, idp: JwksServer) -> Settings:
    return Settings(
        instance_path=tmp_path,
        database_url="sqlite://",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=idp.url,
        oidc_client_id=CLIENT_ID,
    )


@pytest.fixture
def idp_clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def oidc_auth(oidc_settings: Settings, idp_clock: FakeClock) -> Authenticator:
    assert oidc_settings.oidc_jwks_url
    cache = JwksCache(oidc_settings.oidc_jwks_url, min_refresh_interval=10.0, clock=idp_clock)
    return Authenticator(oidc_settings, jwks=cache)


def idp_claims(**overrides: Any) -> dict[str, Any]:
    """A Keycloak-shaped access token body."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": "f2b6c1d0-1111-4c3e-9d55-5a1c1a9c0c11",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": ["clinician"]},
        "tenant_id": "demo",
        "entitlements": ["clinical.orders"],
    }
    claims.update(overrides)
    return claims


def test_jwks_fetched_lazily_once_and_token_verified(
    oidc_settings: Settings, idp: JwksServer, rsa1: Key
) -> None:
    auth = Authenticator(oidc_settings)  # the default JwksCache
    assert idp.requests == 0
    token = sign(rsa1, idp_claims(), kid="rsa-1")
    principal = auth.authenticate(bearer(token), "demo")
    assert (principal.issuer, principal.roles) == (ISSUER, frozenset({"CLINICIAN"}))
    auth.authenticate(bearer(token), "demo")
    assert idp.requests == 1


def test_dev_token_not_accepted_when_idp_configured(
    oidc_auth: Authenticator, oidc_settings: Settings, tmp_path: Path
) -> None:
    dev = Settings(instance_path=tmp_path / "dev", database_url="sqlite://")
    key = load_or_create_dev_key(dev.instance_path)
    token = sign(key, idp_claims(), kid=key.kid)  # even with the IdP's iss/aud
    with pytest.raises(Unauthenticated):
        oidc_auth.authenticate(bearer(token), "demo")


def test_es256_accepted_and_alg_key_mismatch_refused(
    oidc_auth: Authenticator, idp: JwksServer, rsa1: Key, ec1: Key
) -> None:
    idp.document = {"keys": [public_jwk(rsa1), public_jwk(ec1, use="sig")]}
    es = sign(ec1, idp_claims(), alg="ES256", kid="ec-1")
    assert oidc_auth.authenticate(bearer(es), "demo").sub
    # RS256 header pointing at the EC key, and ES256 pointing at the RSA key.
    with pytest.raises(Unauthenticated):
        oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="ec-1")), "demo")
    with pytest.raises(Unauthenticated):
        oidc_auth.authenticate(bearer(sign(ec1, idp_claims(), alg="ES256", kid="rsa-1")), "demo")


def test_key_declared_for_another_algorithm_is_refused(
    oidc_auth: Authenticator, idp: JwksServer, rsa1: Key
) -> None:
    """RFC 7517 `alg` pins a key to one algorithm; an RS256 signature by a PS256 key fails."""
    idp.document = {"keys": [public_jwk(rsa1, alg="PS256")]}
    with pytest.raises(Unauthenticated, match="does not match"):
        oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")


def test_encryption_keys_in_jwks_are_not_used_for_signatures(
    oidc_auth: Authenticator, idp: JwksServer, rsa1: Key, rsa2: Key
) -> None:
    idp.document = {"keys": [public_jwk(rsa1), public_jwk(rsa2, use="enc", alg="RSA-OAEP")]}
    oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")
    with pytest.raises(Unauthenticated):
        oidc_auth.authenticate(bearer(sign(rsa2, idp_claims(), kid="rsa-2")), "demo")


def test_key_rotation_needs_exactly_one_refetch(
    oidc_auth: Authenticator, idp: JwksServer, idp_clock: FakeClock, rsa1: Key, rsa2: Key
) -> None:
    old = sign(rsa1, idp_claims(), kid="rsa-1")
    new = sign(rsa2, idp_claims(), kid="rsa-2")
    oidc_auth.authenticate(bearer(old), "demo")
    assert idp.requests == 1

    idp.document = {"keys": [public_jwk(rsa2, use="sig")]}  # the IdP rotates
    idp_clock.t += 10.0  # a full refresh interval later
    assert oidc_auth.authenticate(bearer(new), "demo").sub
    assert idp.requests == 2
    oidc_auth.authenticate(bearer(new), "demo")
    assert idp.requests == 2
    with pytest.raises(Unauthenticated):  # the retired key is gone from the cache too
        oidc_auth.authenticate(bearer(old), "demo")
    assert idp.requests == 2  # and asking again so soon does not refetch


def test_new_kid_within_refresh_interval_waits(
    oidc_auth: Authenticator, idp: JwksServer, idp_clock: FakeClock, rsa1: Key, rsa2: Key
) -> None:
    oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")
    idp.document = {"keys": [public_jwk(rsa1), public_jwk(rsa2)]}
    new = sign(rsa2, idp_claims(), kid="rsa-2")
    idp_clock.t += 9.0
    with pytest.raises(Unauthenticated, match="unknown key"):
        oidc_auth.authenticate(bearer(new), "demo")
    assert idp.requests == 1
    idp_clock.t += 1.0
    oidc_auth.authenticate(bearer(new), "demo")
    assert idp.requests == 2


def test_concurrent_tokens_with_new_kid_share_one_refetch(
    oidc_auth: Authenticator, idp: JwksServer, idp_clock: FakeClock, rsa1: Key, rsa2: Key
) -> None:
    """Callers queued behind a refetch must see its result, not fail as 'unknown key'."""
    oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")
    idp.document = {"keys": [public_jwk(rsa1), public_jwk(rsa2)]}
    idp.delay = 0.3
    idp_clock.t += 10.0
    new = sign(rsa2, idp_claims(), kid="rsa-2")
    barrier = threading.Barrier(6, timeout=10)

    def attempt(_: int) -> str:
        barrier.wait()
        return oidc_auth.authenticate(bearer(new), "demo").sub

    with ThreadPoolExecutor(6) as pool:
        subs = list(pool.map(attempt, range(6)))
    assert len(subs) == 6
    assert idp.requests == 2


def test_unknown_kid_flood_fetches_at_most_once(
    oidc_auth: Authenticator, idp: JwksServer, idp_clock: FakeClock, rsa1: Key, rsa2: Key
) -> None:
    oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")
    idp_clock.t += 60.0
    bogus = [sign(rsa2, idp_claims(), kid=f"bogus-{i}") for i in range(40)]
    barrier = threading.Barrier(8, timeout=10)

    def attempt(token: str) -> str:
        if token in bogus[:8]:
            barrier.wait()  # the first eight arrive together
        try:
            oidc_auth.authenticate(bearer(token), "demo")
        except Unauthenticated as exc:
            return exc.code
        return "accepted"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, bogus))
    assert outcomes == ["UNAUTHENTICATED"] * len(bogus)
    assert idp.requests == 2  # the initial fetch plus exactly one refresh


def test_unreachable_jwks_is_401(oidc_settings: Settings) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = JwksCache(f"http://127.0.0.1:{port}/certs", timeout=2.0)
    auth = Authenticator(oidc_settings, jwks=cache)
    token = sign(new_key("RSA", "k"), idp_claims(), kid="k")
    with pytest.raises(Unauthenticated, match="could not be verified") as info:
        auth.authenticate(bearer(token), "demo")
    assert str(port) not in info.value.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"keys": []}'),
        (404, b"not found"),
        (200, b"<html>login</html>"),
        (200, b'{"issuer": "x"}'),
        (200, b'{"keys": "nope"}'),
    ],
)
def test_broken_jwks_responses_are_401(
    oidc_auth: Authenticator, idp: JwksServer, rsa1: Key, status: int, body: bytes
) -> None:
    idp.status, idp.raw_body = status, body
    with pytest.raises(Unauthenticated, match="could not be verified"):
        oidc_auth.authenticate(bearer(sign(rsa1, idp_claims(), kid="rsa-1")), "demo")


def test_failed_refresh_keeps_known_keys(
    oidc_auth: Authenticator, idp: JwksServer, idp_clock: FakeClock, rsa1: Key, rsa2: Key
) -> None:
    known = sign(rsa1, idp_claims(), kid="rsa-1")
    oidc_auth.authenticate(bearer(known), "demo")
    idp.status = 503
    idp_clock.t += 30.0
    with pytest.raises(Unauthenticated, match="unknown key"):
        oidc_auth.authenticate(bearer(sign(rsa2, idp_claims(), kid="rsa-2")), "demo")
    assert idp.requests == 2
    assert oidc_auth.authenticate(bearer(known), "demo").sub


def test_idp_token_claims_are_still_checked(oidc_auth: Authenticator, rsa1: Key) -> None:
    for bad in (idp_claims(iss="https://other.example"), idp_claims(aud="account")):
        with pytest.raises(Unauthenticated):
            oidc_auth.authenticate(bearer(sign(rsa1, bad, kid="rsa-1")), "demo")
