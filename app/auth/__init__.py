"""Identity: token verification (tokens.py), JWKS (jwks.py), development keys (devkeys.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("CLINICIAN", "PRESCRIBER", "NURSE", "PATIENT", "ADMIN")
ENTITLEMENT = "clinical.orders"


@dataclass(frozen=True)
class Principal:
    """Who is calling, for which tenant, as established from a verified token (DESIGN §3)."""

    sub: str
    tenant_id: str
    roles: frozenset[str]
    tenants: frozenset[str]
    #: FHIR id of the patient for the PATIENT role (legacy `patient_id` mapped, or `fhirUser`).
    patient_id: str | None = None
    #: SMART resource scopes as found in `scope` (e.g. `user/MedicationRequest.read`).
    scopes: frozenset[str] = field(default_factory=frozenset)
    issuer: str = ""

    @property
    def is_patient_only(self) -> bool:
        """A PATIENT with no staff role sees only their own compartment."""
        return "PATIENT" in self.roles and not self.roles.intersection(
            {"CLINICIAN", "PRESCRIBER", "NURSE", "ADMIN"}
        )
