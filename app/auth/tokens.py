"""Bearer token verification and the request's Principal (DESIGN §3).

Order of checks, so each failure has exactly one answer: the token (401 UNAUTHENTICATED), then
the `X-Tenant-ID` header (400 TENANT_REQUIRED), then tenant membership (403 TENANT_FORBIDDEN),
then the module entitlement (403 MODULE_NOT_ENTITLED). Role checks per endpoint (403
FORBIDDEN) belong to the callers.

Anything wrong with the token, however malformed, is a 401 and never another exception: the
token is attacker-controlled input.

Verified claims are cached per exact token string (`VerifiedTokenCache`), so a client
re-using its access token pays the signature check once, not on every request. The answers
do not change: `exp` and `nbf` are still checked on every request, a cached token is used
only while the key set still holds the key that verified it, and everything after the token
(tenant header, membership, entitlement, roles, patient) runs every time.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from app.auth import ENTITLEMENT, ROLES, Principal
from app.auth._jose import JsonWebSignature, Key
from app.auth.devkeys import load_or_create_dev_key
from app.auth.jwks import JwksCache, KeySetUnavailable
from app.auth.scopes import parse_scopes, scope_allows
from app.domain.ids import from_legacy, is_valid_fhir_id
from app.errors import (
    Forbidden,
    ModuleNotEntitled,
    TenantForbidden,
    TenantRequired,
    Unauthenticated,
)
from app.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)

__all__ = ["LEEWAY_SECONDS", "Authenticator", "VerifiedTokenCache", "scope_allows"]

#: Clock skew tolerated on `exp` and `nbf` (DESIGN §3: at most 60 s).
LEEWAY_SECONDS = 60
#: Only asymmetric algorithms: HMAC would let anyone holding the public key sign tokens.
ALLOWED_ALGS: dict[str, str] = {"RS256": "RSA", "ES256": "EC"}
#: Far above any real access token, far below anything that could hurt.
MAX_TOKEN_CHARS = 16 * 1024
#: Verified tokens remembered per Authenticator (i.e. per worker process): far more than the
#: live tokens of the clients one worker serves, and a bound on what a flood of distinct valid
#: tokens can take: ~4-8 KiB per entry (token string plus parsed claims), so ~16-32 MiB.
TOKEN_CACHE_SIZE = 4096

_FHIR_USER_PATIENT = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")
#: What no user or client identifier holds: control characters (NUL among them, which no
#: PostgreSQL text can store) and lone surrogates (not UTF-8 at all). JSON can carry both;
#: such a subject would fail or be altered wherever it is stored (audit trail, Provenance).
_NOT_AN_IDENTIFIER = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_KNOWN_ROLES = frozenset(ROLES)


def _challenge(error: str | None = None) -> dict[str, str]:
    """RFC 6750 `WWW-Authenticate` for a 401, so standard clients know to (re)authenticate."""
    value = 'Bearer realm="orders-service"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated(message, headers=_challenge("invalid_token"))


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _is_number(value: Any) -> bool:
    """A JSON NumericDate; Python's json accepts NaN and Infinity, which would never expire."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _expired(exp: float, now: float) -> bool:
    """`exp` is past, beyond the leeway; the one rule for fresh and cached tokens alike."""
    return now >= exp + LEEWAY_SECONDS


def _not_yet_valid(nbf: float, now: float) -> bool:
    """`nbf` is ahead, beyond the leeway; the one rule for fresh and cached tokens alike."""
    return nbf > now + LEEWAY_SECONDS


def _str_list(value: Any) -> list[str]:
    """A claim that should be a list of strings; a lone string counts as a one-item list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


class _Verified(NamedTuple):
    """One verified token: its claims (read-only), the key that verified it, exp and nbf."""

    claims: dict[str, Any]
    kid: str | None
    key: Key
    exp: float
    nbf: float | None


class VerifiedTokenCache:
    """Tokens that passed `verify_token`, keyed by the exact token string.

    Why: a client sends the same access token on every request until it expires, and
    verifying it (JWS parse plus an RSA/ECDSA signature check, ~0.05-0.1 ms of CPU) was ~8%
    of a GET by id. A hit costs two dict lookups and a lock.

    Why it is safe, i.e. a hit answers exactly what a full verification would:
    - The key is the whole token string, signature included: a hit means these exact bytes
      were verified by this Authenticator (same issuer, audience and clock), and any change
      to the token, however small, is a miss and a full verification.
    - Only tokens that passed every check are stored, never failures (a failure may be
      transient, e.g. the JWKS unreachable, and must not stick).
    - `exp` and `nbf` are checked again on every hit with the same rules and leeway as a
      fresh verification (`_expired`, `_not_yet_valid`) against the caller's clock; an entry
      outside its window is dropped, and the token goes through the full path, which gives
      the usual 401.
    - Each entry remembers the key object that verified it, and `Authenticator` uses the
      entry only while the key set still returns that very object for the token's `kid`.
      So a JWKS rotation revokes cached tokens of a retired key as soon as the new set is
      fetched, exactly as without the cache (a cached token is not like a cached
      introspection result that stays good until `exp`); a refetch that merely replaces
      the key objects costs one re-verification per token.
    - The stored claims are shared between requests and must be treated as read-only:
      `Authenticator.authenticate` only reads them, and `verify_token` itself bypasses the
      cache and returns a dict of the caller's own.

    Bounded: at most `maxsize` entries, least recently used evicted first, so a stream of
    distinct (validly signed) tokens cannot grow memory.
    """

    def __init__(self, maxsize: int = TOKEN_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> _Verified | None:
        """The entry for `token` if it was verified and `now` is within its exp/nbf window."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if _expired(entry.exp, now) or (
                entry.nbf is not None and _not_yet_valid(entry.nbf, now)
            ):
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry

    def put(self, token: str, entry: _Verified) -> None:
        """Remember a token that has just passed `verify_token`."""
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Authenticator:
    """Turns `Authorization` + `X-Tenant-ID` into a Principal, or raises the typed error.

    Development mode verifies against the local dev key; otherwise against the IdP's JWKS.
    No key is loaded or fetched until the first request. Verified tokens are remembered in
    a `VerifiedTokenCache` (see there for why that is safe); the tenant, entitlement, role
    and patient checks run on every call.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        jwks: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
        token_cache_size: int = TOKEN_CACHE_SIZE,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.token_cache = VerifiedTokenCache(token_cache_size)
        self._jws = JsonWebSignature(list(ALLOWED_ALGS))
        self._jwks: JwksCache | None = None
        if not settings.dev_mode:
            if not settings.oidc_jwks_url:
                raise ConfigurationError("OIDC_JWKS_URL is required outside development mode")
            self._jwks = jwks or JwksCache(settings.oidc_jwks_url)
        self._dev_key: Key | None = None
        self._dev_key_lock = threading.Lock()

    # -- public -------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, tenant_header: str | None) -> Principal:
        """Verify the bearer token and the tenant header; see the module docstring for order."""
        claims = self._verified_claims(self._bearer(authorization))

        tenant_id = (tenant_header or "").strip()
        if not tenant_id:
            raise TenantRequired("The X-Tenant-ID header is required")

        tenants = frozenset(_str_list(claims.get("tenant_id")) + _str_list(claims.get("tenants")))
        if tenant_id not in tenants:
            raise TenantForbidden(f"The token does not grant access to tenant {tenant_id!r}")

        if ENTITLEMENT not in _str_list(claims.get("entitlements")):
            raise ModuleNotEntitled(f"The token is not entitled to the {ENTITLEMENT!r} module")

        roles = self._roles(claims)
        patient_id = _patient_id(claims)
        if "PATIENT" in roles and patient_id is None and not roles - {"PATIENT"}:
            # Without it a PATIENT's compartment is unknown; refuse rather than risk a
            # caller treating "no patient" as "no restriction".
            raise Forbidden("A PATIENT token must carry patient_id or fhirUser (Patient/<id>)")

        return Principal(
            sub=claims["sub"],
            tenant_id=tenant_id,
            roles=roles,
            tenants=tenants,
            patient_id=patient_id,
            scopes=parse_scopes(claims.get("scope"), claims.get("scp")),
            issuer=claims["iss"],
            launch_patient=_launch_patient(claims),
            client_id=_client_of(claims),
        )

    def verify_token(self, token: str) -> dict[str, Any]:
        """Signature and registered claims (iss, aud, exp, nbf, sub); returns the claims.

        Always the full verification, never the cache, and a dict of the caller's own.
        """
        return self._verify(token).claims

    # -- internals ----------------------------------------------------------------------

    def _verified_claims(self, token: str) -> Mapping[str, Any]:
        """`verify_token` through the cache; the claims are shared, so read-only.

        A hit needs the token within its exp/nbf window (checked by the cache) and the key
        set to still hold, under the token's `kid`, the very key that verified it; looking
        it up is what the full path does first, so an unknown `kid` fails the same way.
        """
        entry = self.token_cache.get(token, self._clock())
        if entry is not None:
            try:
                current = self._key_for(entry.kid)
            except Unauthenticated:  # the key was retired: the 401 the full path would give
                self.token_cache.discard(token)
                raise
            if current is entry.key:
                return entry.claims
            self.token_cache.discard(token)  # the key set was refetched: verify again
        verified = self._verify(token)  # raises on any failure: nothing is cached then
        self.token_cache.put(token, verified)
        return verified.claims

    def _verify(self, token: str) -> _Verified:
        """The full verification behind `verify_token`, keeping what the cache needs."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("Token too large")
        parts = token.split(".")
        if len(parts) != 3:
            raise _invalid("Malformed token: expected a signed JWT (three segments)")
        try:
            header = _b64url_json(parts[0])
        except (ValueError, UnicodeError, binascii.Error, RecursionError) as exc:
            raise _invalid("Malformed token header") from exc
        if not isinstance(header, dict):
            raise _invalid("Malformed token header")

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise _invalid(f"Token algorithm {alg!r} is not accepted (RS256 or ES256 only)")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("Malformed token header: kid must be a string")

        key = self._key_for(kid)
        if key.kty != ALLOWED_ALGS[alg] or key.tokens.get("alg", alg) != alg:
            raise _invalid(f"Token algorithm {alg} does not match its key")

        try:
            obj = self._jws.deserialize_compact(token, key)
            claims = json.loads(obj["payload"])
        except Exception as exc:  # any library or decode failure is the caller's bad token
            raise _invalid("Token signature is invalid or the token is malformed") from exc
        if not isinstance(claims, dict):
            raise _invalid("Malformed token: claims are not a JSON object")
        self._check_claims(claims)
        return _Verified(claims, kid, key, claims["exp"], claims.get("nbf"))

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if not authorization or not authorization.strip():
            raise Unauthenticated(
                "An Authorization: Bearer token is required", headers=_challenge()
            )
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise _invalid("The Authorization header must be 'Bearer <token>'")
        return parts[1]

    def _key_for(self, kid: str | None) -> Key:
        if self._jwks is not None:
            # The key set's errors name its URL and the failure: logged (with the request
            # id), never sent to the client (issue 11, item 14).
            try:
                return self._jwks.key_for(kid)
            except KeySetUnavailable as exc:
                log.warning("token not verified: %s", exc.message)
                raise _invalid("The token could not be verified") from exc
            except Unauthenticated as exc:
                log.info("token not verified: %s", exc.message)
                raise _invalid("Token signed with an unknown key") from exc
        key = self._dev_signing_key()
        if kid is not None and kid != key.kid:
            raise _invalid("Token signed with an unknown key (not the development key)")
        return key

    def _dev_signing_key(self) -> Key:
        with self._dev_key_lock:
            if self._dev_key is None:
                self._dev_key = load_or_create_dev_key(self.settings.instance_path)
            return self._dev_key

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        if claims.get("iss") != self.settings.issuer:
            raise _invalid("Token issuer is not accepted")

        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.settings.audience not in audiences:
            raise _invalid("Token audience does not include this service")

        exp = claims.get("exp")
        if exp is None:
            raise _invalid("Token has no expiry (exp)")
        if not _is_number(exp):
            raise _invalid("Token expiry (exp) is not a number")
        if _expired(exp, now):
            raise _invalid("Token has expired")

        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                raise _invalid("Token not-before (nbf) is not a number")
            if _not_yet_valid(nbf, now):
                raise _invalid("Token is not valid yet (nbf)")

        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _invalid("Token has no subject (sub)")
        for name in ("sub", "azp", "client_id"):
            value = claims.get(name)
            if isinstance(value, str) and _NOT_AN_IDENTIFIER.search(value):
                raise _invalid(f"Token {name} has control characters or invalid text")

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """realm_access.roles plus resource_access[client].roles, upper-cased, known roles only."""
        names: list[str] = []
        realm = claims.get("realm_access")
        if isinstance(realm, dict):
            names += _str_list(realm.get("roles"))
        client_id = self.settings.oidc_client_id
        resource_access = claims.get("resource_access")
        if client_id and isinstance(resource_access, dict):
            client = resource_access.get(client_id)
            if isinstance(client, dict):
                names += _str_list(client.get("roles"))
        return frozenset(n.upper() for n in names) & _KNOWN_ROLES


def _launch_patient(claims: Mapping[str, Any]) -> str | None:
    """The SMART launch context `patient` (a FHIR id; a legacy `pat_…` id is mapped)."""
    value = claims.get("patient")
    if not isinstance(value, str) or not value.strip():
        return None
    candidate = from_legacy(value.strip().removeprefix("Patient/"))
    return candidate if is_valid_fhir_id(candidate) else None


def _patient_id(claims: Mapping[str, Any]) -> str | None:
    """FHIR id of the caller's own Patient: `patient_id` (legacy `pat_…` mapped) or `fhirUser`."""
    legacy = claims.get("patient_id")
    if isinstance(legacy, str) and legacy.strip():
        candidate = from_legacy(legacy.strip())
        return candidate if is_valid_fhir_id(candidate) else None
    fhir_user = claims.get("fhirUser")
    if isinstance(fhir_user, str):
        match = _FHIR_USER_PATIENT.search(fhir_user.strip())
        if match:
            return match.group(1)
    return None


def _client_of(claims: Mapping[str, Any]) -> str | None:
    """`azp` (OIDC: the party the token was issued to), else `client_id` (RFC 9068)."""
    for name in ("azp", "client_id"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value[:128]
    return None
