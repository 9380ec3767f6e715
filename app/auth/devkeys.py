"""Development-mode signing key and token minting (DESIGN §2: no OIDC settings → local key).

With no identity provider configured, the service verifies tokens against an RSA key kept in
the instance folder, and `orders-service token` mints tokens with it. The key must be the same
for every process sharing the instance folder (server workers, the CLI), so it is created once,
atomically, and every process then reads the file that won.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.auth._jose import JsonWebKey, JsonWebSignature, RSAKey
from app.settings import Settings

KEY_FILE = "dev-signing-key.json"
DEV_ALG = "RS256"
_RSA_BITS = 2048


def _key_path(instance_path: Path) -> Path:
    return Path(instance_path) / KEY_FILE


def _read_key(path: Path) -> RSAKey:
    """Load the stored private JWK; a file that is not an RSA private JWK is a hard error."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kty") != "RSA" or "d" not in data:
        raise RuntimeError(f"{path} is not an RSA private JWK; delete it to create a new one")
    key = JsonWebKey.import_key(data)
    if not isinstance(key, RSAKey) or not key.kid:
        raise RuntimeError(f"{path} holds no usable RSA key with a 'kid'; delete it")
    return key


def _new_key_document() -> dict[str, Any]:
    """A fresh private JWK whose `kid` is its RFC 7638 thumbprint (stable for the key's life)."""
    key = JsonWebKey.generate_key("RSA", _RSA_BITS, is_private=True)
    doc: dict[str, Any] = key.as_dict(is_private=True)
    doc.update(kid=key.thumbprint(), alg=DEV_ALG, use="sig")
    return doc


@functools.lru_cache(maxsize=16)
def _cached_key(path: str, _mtime_ns: int) -> RSAKey:
    """Parsing the key costs tens of ms; minting many tokens (tests, the CLI) reuses it. The
    file's mtime is part of the key, so a replaced key file is read again."""
    return _read_key(Path(path))


def load_or_create_dev_key(instance_path: Path) -> RSAKey:
    """Return the development RSA private key, creating it (mode 0600) on first use.

    Creation is race-safe: the key is written to a private temp file in the same folder and
    published with `os.link`, which fails if another process published first; the loser
    discards its key. Where hard links are unsupported it falls back to `os.replace`. Either
    way the file is read back, so every process uses the key that is on disk.
    """
    path = _key_path(instance_path)
    if path.exists():
        return _cached_key(str(path), path.stat().st_mtime_ns)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".dev-signing-key.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp creates it 0600
            json.dump(_new_key_document(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        except OSError:
            if not path.exists():
                os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return _read_key(path)


def dev_public_jwks(instance_path: Path) -> dict[str, Any]:
    """The public half of the development key as a JWKS document (safe to publish)."""
    key = load_or_create_dev_key(instance_path)
    public: dict[str, Any] = key.as_dict(is_private=False)
    public.setdefault("alg", DEV_ALG)
    public.setdefault("use", "sig")
    return {"keys": [public]}


def mint_token(
    settings: Settings,
    *,
    sub: str = "dev-user",
    roles: Iterable[str] = ("CLINICIAN",),
    tenants: Iterable[str] = ("demo",),
    patient_id: str | None = None,
    scope: str | None = None,
    entitlements: Iterable[str] = ("clinical.orders",),
    expires_in: int = 3600,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign a development token shaped like a Keycloak access token (DESIGN §3 claims).

    `extra_claims` is applied last; a value of None removes the claim, so tests can build
    tokens that are wrong in exactly one way. Refused outside development mode, because a
    locally minted token must never be accepted where a real identity provider is configured.
    """
    if not settings.dev_mode:
        raise RuntimeError("mint_token is available only in development mode (no OIDC_* set)")
    key = load_or_create_dev_key(settings.instance_path)
    now = int(time.time())
    tenant_list = list(tenants)
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in,
        "jti": uuid.uuid4().hex,
        "realm_access": {"roles": list(roles)},
        "tenants": tenant_list,
        "entitlements": list(entitlements),
    }
    if len(tenant_list) == 1:
        claims["tenant_id"] = tenant_list[0]
    if patient_id is not None:
        claims["patient_id"] = patient_id
    if scope is not None:
        claims["scope"] = scope
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    header = {"alg": DEV_ALG, "typ": "JWT", "kid": key.kid}
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signed: bytes = JsonWebSignature([DEV_ALG]).serialize_compact(header, payload, key)
    return signed.decode("ascii")
