"""Roles per legacy endpoint, exactly as the seed lists them (api-contracts.txt).

The domain services apply DESIGN §3's action rules as well; this table is the seed's
narrower per-endpoint contract (e.g. a NURSE may read orders but not referrals).
"""

from __future__ import annotations

from app.auth import Principal
from app.errors import Forbidden

ENDPOINT_ROLES: dict[str, frozenset[str]] = {
    "orders.create": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "orders.batch": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "orders.activate": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "orders.acknowledge": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "orders.get": frozenset({"CLINICIAN", "NURSE", "PATIENT"}),
    "orders.list": frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"}),
    "orders.cancel": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "orders.hold": frozenset({"CLINICIAN"}),
    "orders.resume": frozenset({"CLINICIAN"}),
    "orders.correction": frozenset({"CLINICIAN", "ADMIN"}),
    "order_sets.create": frozenset({"CLINICIAN", "ADMIN"}),
    "order_sets.list": frozenset({"CLINICIAN", "ADMIN"}),
    "order_sets.instantiate": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "referrals.get": frozenset({"CLINICIAN", "PATIENT"}),
    "referrals.list": frozenset({"CLINICIAN", "ADMIN"}),
}


def require(principal: Principal, endpoint: str) -> None:
    if not principal.roles.intersection(ENDPOINT_ROLES[endpoint]):
        raise Forbidden(f"Your roles do not allow {endpoint}")


#: The FHIR restful-interaction each endpoint amounts to, for the audit trail's `subtype`
#: (the endpoint itself is the second coding); lifecycle actions are operations.
INTERACTION: dict[str, str] = {
    "orders.create": "create",
    "orders.batch": "batch",
    "orders.get": "read",
    "referrals.get": "read",
    "orders.list": "search-type",
    "referrals.list": "search-type",
    "order_sets.list": "search-type",
    "order_sets.create": "create",
}
