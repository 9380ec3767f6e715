"""Identifiers (DESIGN §4): server ids are `<prefix>-<ULID>`; legacy ids swap the first `-` for `_`.

FHIR ids match `[A-Za-z0-9\\-\\.]{1,64}` and so can carry no `_`; the legacy API shows the same
id with `_`. This module is the only place that knows the mapping.
"""

from __future__ import annotations

import re

from ulid import ULID

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Prefix per resource type for server-assigned ids.
PREFIXES: dict[str, str] = {
    "MedicationRequest": "ord",
    "ServiceRequest": "ord",
    "NutritionOrder": "ord",
    "DetectedIssue": "cds",
    "PlanDefinition": "ords",
    "ActivityDefinition": "act",
    "Medication": "med",
    "RequestGroup": "rg",
    "CarePlan": "cp",
    "Task": "task",
    "Subscription": "sub",
    "Provenance": "prov",
    "Patient": "pat",
    "Encounter": "enc",
    "AllergyIntolerance": "alg",
    "AuditEvent": "audit",
}


def new_id(resource_type: str) -> str:
    prefix = PREFIXES.get(resource_type, "res")
    return f"{prefix}-{ULID()}"


def is_valid_fhir_id(value: str) -> bool:
    return bool(FHIR_ID.fullmatch(value))


def to_legacy(fhir_id: str) -> str:
    """`ord-01J…` → `ord_01J…` (only the first `-`)."""
    return fhir_id.replace("-", "_", 1) if "-" in fhir_id else fhir_id


def from_legacy(legacy_id: str) -> str:
    """`pat_01J…` → `pat-01J…`; ids without `_` pass unchanged."""
    return legacy_id.replace("_", "-")
