"""Identity: token verification (tokens.py), JWKS (jwks.py), development keys (devkeys.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("CLINICIAN", "PRESCRIBER", "NURSE", "PATIENT", "ADMIN")
ENTITLEMENT = "clinical.orders"
#: Staff roles that may read any patient's data in the tenant (DESIGN §3 read row).
STAFF_READ_ROLES = frozenset({"CLINICIAN", "NURSE", "ADMIN"})
#: The compartment of a token that must be limited to a patient but names none: matches
#: no resource, so such a token sees nothing rather than everything.
NO_PATIENT = "!no-patient"  # not a valid FHIR id, so it matches nothing


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
    #: SMART launch context (`patient` claim): the patient a `patient/` scope is about.
    launch_patient: str | None = None
    #: The OAuth client the token was issued to (`azp`, else `client_id`): the audit trail's
    #: "which application".
    client_id: str | None = None

    @property
    def is_patient_only(self) -> bool:
        """A PATIENT with no staff role at all."""
        return "PATIENT" in self.roles and not self.roles.intersection(
            {"CLINICIAN", "PRESCRIBER", "NURSE", "ADMIN"}
        )

    @property
    def has_patient_scopes(self) -> bool:
        """SMART `patient/…` scopes: the token acts in one patient's context."""
        return any(s.startswith("patient/") for s in self.scopes)

    @property
    def compartment(self) -> str | None:
        """The one patient whose compartment this token is limited to, or None (tenant-wide).

        * `patient/` SMART scopes limit every interaction to the launch patient (`patient`
          claim, else the caller's own patient), whatever the roles (issue 11, item 7). A
          token mixing `patient/` and `user/` scopes is limited too: fail closed.
        * A token whose read permission comes only from PATIENT (no CLINICIAN, NURSE or
          ADMIN) is limited to the caller's own patient, even with a staff role such as
          PRESCRIBER that grants no read (issue 11, item 5).
        A token that must be limited but names no patient gets NO_PATIENT: it sees nothing.
        """
        if self.has_patient_scopes:
            return self.launch_patient or self.patient_id or NO_PATIENT
        if "PATIENT" in self.roles and not self.roles.intersection(STAFF_READ_ROLES):
            return self.patient_id or NO_PATIENT
        return None
