"""The one place that imports `authlib.jose` (signatures and keys for devkeys, jwks and tokens).

Authlib 1.x marks `authlib.jose` deprecated in favour of `joserfc`, but the project is built on
authlib (DESIGN §3), so the import-time notice is expected noise. Authlib attributes it to
whichever module imports it and installs an "always" filter of its own, so neither the project's
warning filters nor a per-module filter can target it; here it is suppressed for this one
import, by exact message, and every other warning keeps its normal treatment.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # `authlib.deprecate` pushes its own "always" filter on import; load it first so the
    # narrower filter below sits in front of it. `catch_warnings` restores the global filters.
    import authlib.deprecate  # noqa: F401

    warnings.filterwarnings(
        "ignore",
        message=r"authlib\.jose module is deprecated",
        category=DeprecationWarning,
    )
    from authlib.jose import (
        ECKey,
        JoseError,
        JsonWebKey,
        JsonWebSignature,
        Key,
        RSAKey,
    )

__all__ = ["ECKey", "JoseError", "JsonWebKey", "JsonWebSignature", "Key", "RSAKey"]
