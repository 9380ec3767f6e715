"""Identifiers (DESIGN §4): server ids are `<prefix>-<ULID>`; legacy ids swap the first `-` for `_`.

FHIR ids match `[A-Za-z0-9\\-\\.]{1,64}` and so can carry no `_`; the legacy API shows the same
id with `_`. This module is the only place that knows the mapping.
"""

from __future__ import annotations

import os
import re
import time

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


#: Crockford's base32, the ULID alphabet.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: The last two characters of a ULID (its low 10 bits), precomputed.
_TAILS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]


def new_ids(resource_type: str, n: int) -> list[str]:
    """`n` server ids at once: one ULID timestamp (now) and consecutive random parts, so they
    are unique and strictly increasing, as a ULID generator's monotonic run within one
    millisecond is (the audit trail's flusher names hundreds of events per batch; one
    `new_id` each cost more than building the rest of the event). The random start leaves
    the top bit clear, so `n` consecutive values cannot carry into the timestamp."""
    start = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big") >> 1
    return _consecutive(PREFIXES.get(resource_type, "res"), start, n)


def _consecutive(prefix: str, start: int, n: int) -> list[str]:
    """The ids of the 128-bit ULID values `start`…`start + n - 1`: the first 24 characters are
    encoded once per 1,024 values, the last two looked up."""
    out: list[str] = []
    head, block = "", -1
    for value in range(start, start + n):
        if value >> 10 != block:
            block = value >> 10
            head = f"{prefix}-{str(ULID.from_int(value))[:24]}"
        out.append(head + _TAILS[value & 1023])
    return out


def is_valid_fhir_id(value: str) -> bool:
    return bool(FHIR_ID.fullmatch(value))


def to_legacy(fhir_id: str) -> str:
    """`ord-01J…` → `ord_01J…` (only the first `-`)."""
    return fhir_id.replace("-", "_", 1) if "-" in fhir_id else fhir_id


def from_legacy(legacy_id: str) -> str:
    """`pat_01J…` → `pat-01J…`; ids without `_` pass unchanged."""
    return legacy_id.replace("_", "-")
