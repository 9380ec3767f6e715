"""The verified-token cache in `Authenticator` (app/auth/tokens.py).

A hit must answer exactly what a full verification would: the same 401s at `exp`/`nbf` (with
the same leeway, against the injected clock), the same tenant/entitlement/role checks on
every request, and a fresh verification once the key that verified a token is no longer the
one the key set holds. Signature checks are counted by spying on the Authenticator's own
`JsonWebSignature` object; nothing else is faked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app.auth._jose import JsonWebKey, JsonWebSignature, Key
from app.auth.devkeys import load_or_create_dev_key, mint_token
from app.auth.jwks import JwksCache
from app.auth.tokens import LEEWAY_SECONDS, Authenticator, VerifiedTokenCache
from app.errors import TenantForbidden, Unauthenticated
from app.settings import Settings

ISSUER = "https://idp.example.test/realms/clinic"
AUDIENCE = "orders-service"


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class SignatureSpy:
    """Counts the Authenticator's signature verifications (its `deserialize_compact`)."""

    def __init__(self, auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real: Callable[..., Any] = auth._jws.deserialize_compact

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(auth._jws, "deserialize_compact", counting)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def _sign(key: Key, claims: dict[str, Any]) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    payload = json.dumps(claims).encode()
    signed: bytes = JsonWebSignature(["RS256"]).serialize_compact(header, payload, key)
    return signed.decode("ascii")


def _rsa_key(kid: str) -> Key:
    generated = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    return JsonWebKey.import_key(generated.as_dict(is_private=True, kid=kid))


@pytest.fixture(scope="module")
def instance_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture
def settings(instance_path: Path) -> Settings:
    return Settings(instance_path=instance_path, database_url="sqlite://")


@pytest.fixture
def clock() -> FakeClock:
    # Whole seconds near real time: mint_token stamps iat/nbf/exp from the real clock.
    return FakeClock(float(int(time.time())))


@pytest.fixture
def auth(settings: Settings, clock: FakeClock) -> Authenticator:
    return Authenticator(settings, clock=clock)


@pytest.fixture
def spy(auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> SignatureSpy:
    return SignatureSpy(auth, monkeypatch)


# -- hits -----------------------------------------------------------------------------------


def test_verified_token_is_served_from_cache(
    settings: Settings, auth: Authenticator, spy: SignatureSpy
) -> None:
    token = mint_token(settings, sub="u-1", roles=("NURSE",), tenants=("demo",))
    first = auth.authenticate(bearer(token), "demo")
    assert spy.calls == 1
    for _ in range(5):
        assert auth.authenticate(bearer(token), "demo") == first
    assert spy.calls == 1
    assert len(auth.token_cache) == 1


def test_checks_after_the_token_still_run_on_a_hit(
    settings: Settings, auth: Authenticator, spy: SignatureSpy
) -> None:
    token = mint_token(settings, tenants=("demo",))
    auth.authenticate(bearer(token), "demo")
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "acme")
    assert auth.authenticate(bearer(token), " demo ").tenant_id == "demo"
    assert spy.calls == 1


def test_verify_token_is_uncached_and_returns_the_callers_own_dict(
    settings: Settings, auth: Authenticator, spy: SignatureSpy
) -> None:
    token = mint_token(settings, roles=("NURSE",), tenants=("demo",))
    auth.authenticate(bearer(token), "demo")
    claims = auth.verify_token(token)
    assert spy.calls == 2
    claims["tenants"] = ["acme"]
    claims["realm_access"]["roles"] = ["ADMIN"]
    assert auth.verify_token(token)["realm_access"]["roles"] == ["NURSE"]
    # ...and the cached copy that authenticate uses is untouched.
    principal = auth.authenticate(bearer(token), "demo")
    assert principal.roles == frozenset({"NURSE"})
    with pytest.raises(TenantForbidden):
        auth.authenticate(bearer(token), "acme")


# -- the time window is enforced on hits ----------------------------------------------------


def test_cached_token_is_rejected_once_expired(
    settings: Settings, auth: Authenticator, clock: FakeClock, spy: SignatureSpy
) -> None:
    exp = int(clock.t) + 100
    token = mint_token(settings, extra_claims={"exp": exp})
    auth.authenticate(bearer(token), "demo")
    clock.t = exp + LEEWAY_SECONDS - 1  # still inside the leeway: a hit
    auth.authenticate(bearer(token), "demo")
    assert spy.calls == 1
    clock.t = exp + LEEWAY_SECONDS  # the boundary the full path rejects at
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(bearer(token), "demo")
    assert len(auth.token_cache) == 0  # the entry was dropped, and the failure not stored
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(bearer(token), "demo")


def test_cached_token_is_rejected_before_nbf(
    settings: Settings, auth: Authenticator, clock: FakeClock
) -> None:
    nbf = int(clock.t)
    token = mint_token(settings, extra_claims={"nbf": nbf})
    auth.authenticate(bearer(token), "demo")
    clock.t = nbf - LEEWAY_SECONDS  # still accepted, as on the full path
    auth.authenticate(bearer(token), "demo")
    clock.t = nbf - LEEWAY_SECONDS - 1  # a clock stepped back past the leeway
    with pytest.raises(Unauthenticated, match="not valid yet"):
        auth.authenticate(bearer(token), "demo")
    assert len(auth.token_cache) == 0


# -- failures are never cached --------------------------------------------------------------


def test_bad_signature_is_never_cached(
    settings: Settings, auth: Authenticator, spy: SignatureSpy
) -> None:
    header, payload, signature = mint_token(settings).split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer(forged), "demo")
    assert spy.calls == 3
    assert len(auth.token_cache) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"sub": None},
        {"exp": None},
    ],
)
def test_well_signed_token_with_bad_claims_is_never_cached(
    settings: Settings, auth: Authenticator, spy: SignatureSpy, extra: dict[str, Any]
) -> None:
    token = mint_token(settings, extra_claims=extra)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer(token), "demo")
    assert spy.calls == 2
    assert len(auth.token_cache) == 0


def test_token_expired_at_first_sight_is_not_cached(
    settings: Settings, auth: Authenticator, clock: FakeClock
) -> None:
    token = mint_token(settings, extra_claims={"exp": int(clock.t) - LEEWAY_SECONDS})
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(bearer(token), "demo")
    assert len(auth.token_cache) == 0


# -- keys -----------------------------------------------------------------------------------


def test_changed_dev_key_forces_reverification(
    settings: Settings, auth: Authenticator, spy: SignatureSpy
) -> None:
    token = mint_token(settings)
    auth.authenticate(bearer(token), "demo")
    # Another key under the same kid: only a fresh verification can notice the change.
    auth._dev_key = _rsa_key(load_or_create_dev_key(settings.instance_path).kid)
    with pytest.raises(Unauthenticated, match="signature"):
        auth.authenticate(bearer(token), "demo")
    assert spy.calls == 2
    assert len(auth.token_cache) == 0


def test_jwks_refetch_and_rotation_are_honoured_on_hits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JWKS is served in-process (`_fetch` replaced); the refresh logic is the real one."""
    old, new = _rsa_key("k1"), _rsa_key("k2")
    document: dict[str, Any] = {"keys": [old.as_dict(is_private=False)]}
    settings = Settings(
        instance_path=tmp_path,
        database_url="sqlite://",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url="https://idp.example.test/certs",
    )
    jwks_clock = FakeClock(1000.0)
    jwks = JwksCache("https://idp.example.test/certs", min_refresh_interval=10.0, clock=jwks_clock)
    monkeypatch.setattr(jwks, "_fetch", lambda: document)
    auth = Authenticator(settings, jwks=jwks)
    spy = SignatureSpy(auth, monkeypatch)

    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "exp": now + 300,
        "tenant_id": "demo",
        "entitlements": ["clinical.orders"],
    }
    old_token, new_token = _sign(old, claims), _sign(new, claims)
    auth.authenticate(bearer(old_token), "demo")
    auth.authenticate(bearer(old_token), "demo")
    assert (spy.calls, jwks.fetch_count) == (1, 1)

    # The IdP rotates; a token with the new kid makes the key set refetch...
    document = {"keys": [new.as_dict(is_private=False)]}
    jwks_clock.t += 10.0
    auth.authenticate(bearer(new_token), "demo")
    assert (spy.calls, jwks.fetch_count) == (2, 2)
    # ...after which the old key's cached token is refused, as without the cache.
    with pytest.raises(Unauthenticated, match="unknown key"):
        auth.authenticate(bearer(old_token), "demo")
    assert spy.calls == 2
    assert len(auth.token_cache) == 1  # only the new token

    # A refetch that returns the same key as a new object costs one re-verification.
    jwks_clock.t += 10.0
    with pytest.raises(Unauthenticated, match="unknown key"):
        auth.authenticate(bearer(old_token), "demo")  # unknown kid again: a refetch
    assert (spy.calls, jwks.fetch_count) == (2, 3)
    auth.authenticate(bearer(new_token), "demo")
    auth.authenticate(bearer(new_token), "demo")
    assert spy.calls == 3


# -- bounds and concurrency -----------------------------------------------------------------


def test_cache_is_bounded_and_evicts_least_recently_used(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = Authenticator(settings, clock=clock, token_cache_size=3)
    spy = SignatureSpy(auth, monkeypatch)
    tokens = [mint_token(settings, sub=f"u-{i}") for i in range(5)]
    for token in tokens[:3]:
        auth.authenticate(bearer(token), "demo")
    auth.authenticate(bearer(tokens[0]), "demo")  # touch: now the most recently used
    assert spy.calls == 3
    for token in tokens[3:]:
        auth.authenticate(bearer(token), "demo")
    assert len(auth.token_cache) == 3
    assert spy.calls == 5
    auth.authenticate(bearer(tokens[0]), "demo")  # kept
    assert spy.calls == 5
    auth.authenticate(bearer(tokens[1]), "demo")  # evicted: verified again
    assert spy.calls == 6
    assert len(auth.token_cache) == 3


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VerifiedTokenCache(0)


def test_concurrent_requests_share_the_cache_safely(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = Authenticator(settings, clock=clock, token_cache_size=8)
    spy = SignatureSpy(auth, monkeypatch)
    tokens = [mint_token(settings, sub=f"u-{i}") for i in range(16)]
    start = threading.Barrier(8)

    def worker(offset: int) -> set[str]:
        start.wait()
        subs = set()
        for i in range(200):
            token = tokens[(offset + i) % len(tokens)]
            subs.add(auth.authenticate(bearer(token), "demo").sub)
        return subs

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))
    assert all(subs == {f"u-{i}" for i in range(16)} for subs in results)
    assert len(auth.token_cache) <= 8
    assert spy.calls >= 16
