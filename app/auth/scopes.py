"""SMART on FHIR resource scopes (v1 `.read`/`.write`/`.*`, v2 `.cruds`), DESIGN §3.

Scopes narrow what the role rules allow on `/fhir/R4`; they never widen it. A token with no
SMART resource scope at all is governed by roles alone. A token that asks for resource scopes
we cannot fully honour (v2 `?param=` filters, malformed permissions) keeps them: they grant
nothing, but their presence still switches scope enforcement on, so a narrowed token can never
fall back to the role rules' full access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ACTIONS = frozenset({"read", "search", "create", "update", "delete"})

#: A scope we can enforce exactly.
SMART_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<resource>\*|[A-Za-z]+)"
    r"\.(?P<perm>read|write|\*|c?r?u?d?s?)$"
)
#: Anything in the SMART resource-scope namespace (kept even when not enforceable, see above).
_RESOURCE_SCOPE_PREFIX = re.compile(r"^(patient|user|system)/\S")

_V1: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "search"}),
    "write": frozenset({"create", "update", "delete"}),
    "*": ACTIONS,
}
_V2_LETTERS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def parse_scopes(scope: Any, scp: Any = None) -> frozenset[str]:
    """SMART resource scopes from the `scope` claim (space-separated) or `scp` (list or string).

    Non-resource scopes (`openid`, `launch/patient`, `offline_access`, …) are dropped.
    """
    items: list[str] = []
    for claim in (scope, scp):
        if isinstance(claim, str):
            items.extend(claim.split())
        elif isinstance(claim, list | tuple):
            items.extend(s for s in claim if isinstance(s, str))
    return frozenset(s for s in items if _RESOURCE_SCOPE_PREFIX.match(s))


def _granted_actions(perm: str) -> frozenset[str]:
    if perm in _V1:
        return _V1[perm]
    return frozenset(_V2_LETTERS[ch] for ch in perm)


def scope_allows(
    scopes: frozenset[str] | Iterable[str],
    resource_type: str,
    action: str,
    patient_context: bool,
) -> bool:
    """Whether the token's SMART scopes permit `action` on `resource_type`.

    `action` is one of read, search, create, update, delete. No resource scopes → True (roles
    decide alone). `patient/`, `user/` and `system/` scopes all grant here; keeping a PATIENT
    or a patient-launched app inside one patient's compartment is the callers' job, so
    `patient_context` does not change the answer (it is part of the signature so callers say
    what they know, and so compartment-aware rules can be added here without touching them).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {sorted(ACTIONS)}")
    scope_set = frozenset(scopes)
    if not scope_set:
        return True
    for scope in scope_set:
        match = SMART_SCOPE.match(scope)
        if match is None or not match["perm"]:
            continue  # kept only to keep enforcement on; grants nothing
        if match["resource"] not in ("*", resource_type):
            continue
        if action in _granted_actions(match["perm"]):
            return True
    return False
