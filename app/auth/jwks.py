"""The identity provider's signing keys (JWKS), fetched lazily and cached in memory.

Keys rotate: a token whose `kid` is not in the cached set triggers a refetch (DESIGN §3). A
refetch is at most once per `min_refresh_interval`, so a stream of tokens with made-up `kid`s
cannot turn the service into a load generator against the IdP. A failed fetch keeps the keys
already known, and surfaces as 401 UNAUTHENTICATED rather than a 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from app.auth._jose import JsonWebKey, Key
from app.errors import Unauthenticated

#: Key types that can verify the algorithms we accept (RS256, ES256).
_SIGNING_KTY = frozenset({"RSA", "EC"})
#: A JWKS is a few KiB; anything far larger is not one.
_MAX_JWKS_BYTES = 1024 * 1024


class KeySetUnavailable(Unauthenticated):
    """The key set could not be had at all. The message names the URL and the failure: it
    is for the log only; clients get a generic 401 (issue 11, item 14)."""


class JwksCache:
    """Thread-safe, lazily filled cache of one JWKS URL's signing keys, looked up by `kid`.

    Nothing is fetched at construction: the first `key_for` call fetches. Lookups of known
    keys never wait on a fetch in progress.
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 10.0,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self._clock = clock
        # Replaced wholesale (never mutated) so readers need no lock.
        self._keys: Mapping[str | None, Key] = {}
        self._loaded = False
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._fetch_lock = threading.Lock()
        #: Number of fetches attempted; lets tests and metrics see the refresh behaviour.
        self.fetch_count = 0

    def key_for(self, kid: str | None) -> Key:
        """The verification key for `kid` (None: the set's only key), refetching once if unknown."""
        key = self._lookup(kid)
        if key is not None:
            return key
        with self._fetch_lock:
            key = self._lookup(kid)  # another thread may have refreshed while we waited
            if key is not None:
                return key
            now = self._clock()
            recent = (
                self._last_attempt is not None
                and now - self._last_attempt < self.min_refresh_interval
            )
            if not recent:
                self._refresh(now)
                key = self._lookup(kid)
                if key is not None:
                    return key
        if not self._loaded:
            raise KeySetUnavailable(
                "Cannot verify the token: the identity provider's key set is unavailable"
                + (f" ({self._last_error})" if self._last_error else "")
            )
        raise Unauthenticated(
            "Token signed with an unknown key (kid not in the identity provider's key set)"
            + (f"; the last refresh failed ({self._last_error})" if self._last_error else "")
        )

    def _lookup(self, kid: str | None) -> Key | None:
        keys = self._keys
        if kid is None:
            # A token without `kid` is only unambiguous against a one-key set.
            only = list(keys.values())
            return only[0] if len(only) == 1 else None
        return keys.get(kid)

    def _refresh(self, now: float) -> None:
        """Fetch and replace the key set; on failure keep the old keys and remember why."""
        self._last_attempt = now
        self.fetch_count += 1
        try:
            keys = _parse_jwks(self._fetch())
        except Unauthenticated as exc:
            self._last_error = exc.message
            if not self._loaded:
                raise KeySetUnavailable(exc.message) from exc
            return
        self._keys = keys
        self._loaded = True
        self._last_error = None

    def _fetch(self) -> Any:
        try:
            with requests.get(
                self.url,
                timeout=self.timeout,
                headers={"Accept": "application/json"},
                stream=True,
            ) as resp:
                resp.raise_for_status()
                body = resp.raw.read(_MAX_JWKS_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise Unauthenticated(
                f"Cannot fetch the identity provider's key set from {self.url}: "
                f"{type(exc).__name__}"
            ) from exc
        if len(body) > _MAX_JWKS_BYTES:
            raise Unauthenticated(f"The key set at {self.url} is too large to be a JWKS")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise Unauthenticated(f"The key set at {self.url} is not valid JSON") from exc


def _parse_jwks(document: Any) -> dict[str | None, Key]:
    """Signing keys of a JWKS by `kid`; unusable keys (enc, other kty, broken) are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise Unauthenticated("The identity provider's key set is not a JWKS document")
    keys: dict[str | None, Key] = {}
    for raw in document["keys"]:
        if not isinstance(raw, dict) or raw.get("kty") not in _SIGNING_KTY:
            continue
        if raw.get("use", "sig") != "sig":
            continue  # Keycloak publishes encryption keys in the same set
        kid = raw.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        public = {k: v for k, v in raw.items() if k != "d"}  # never hold private material
        try:
            keys[kid] = JsonWebKey.import_key(public)
        except Exception:  # one malformed key must not hide the others
            continue
    return keys
