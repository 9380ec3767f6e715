"""Which interactions a request may use: the CapabilityStatement's list per type and the
token's SMART scopes. Shared by single requests (router.py) and Bundle entries
(bundles.py), so an entry is checked exactly like the request it stands for."""

from __future__ import annotations

from app.auth import Principal
from app.auth.scopes import scope_allows
from app.domain import access
from app.errors import Forbidden, MethodNotAllowed
from app.fhir import capability

#: The SMART action each REST interaction needs; anything else is a read.
SCOPE_ACTION = {"search-type": "search", "create": "create", "update": "update"}


def not_allowed_message(resource_type: str, interaction: str) -> str:
    if interaction == "delete":
        return (
            f"Resources are never deleted. To withdraw a {resource_type}, update its status to "
            "entered-in-error (or cancel it)."
        )
    return f"{interaction} is not supported for {resource_type}"


def require_advertised(resource_type: str, interaction: str) -> None:
    """405 for an interaction the CapabilityStatement does not list for the type."""
    cap = capability.load().types.get(resource_type)
    if cap is None or interaction not in cap.interactions:
        raise MethodNotAllowed(not_allowed_message(resource_type, interaction))


def check_scope(principal: Principal | None, resource_type: str, interaction: str) -> None:
    """SMART scopes, on top of the role rules the services apply."""
    action = SCOPE_ACTION.get(interaction, "read")
    assert principal is not None
    if not scope_allows(principal.scopes, resource_type, action, principal.patient_id is not None):
        raise Forbidden(f"The token's scopes do not allow {action} on {resource_type}")


def allow(principal: Principal | None, resource_type: str, interaction: str) -> None:
    require_advertised(resource_type, interaction)
    check_scope(principal, resource_type, interaction)


def may_see_match(principal: Principal | None, resource_type: str) -> bool:
    """May the caller of a conditional create see the resource it matched? Only with read
    rights: a role that reads, and SMART scopes that allow reading the type."""
    assert principal is not None
    return access.may(principal, access.Permission.READ) and may_read(principal, resource_type)


def may_read(principal: Principal, resource_type: str) -> bool:
    """May this token read resources of this type (e.g. an `_include`d one)?"""
    return scope_allows(principal.scopes, resource_type, "read", principal.patient_id is not None)
