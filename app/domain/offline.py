"""Offline sync rules (DESIGN §7, seeds/sync-contract.txt), the same on every face.

A request replayed from a device queue carries `X-Offline-Queued-At: <RFC 3339>`.
Medication and referral orders, and order-set instantiation, must not be created from such a
queue (server-authoritative: CDS must run with the clinician connected); lab, radiology and
the other orders may, and are checked against the server's state on submission.
"""

from __future__ import annotations

import re
from typing import Any

from app.domain.order_types import is_referral
from app.errors import Issue, OfflineCreateNotAllowed, ValidationFailed

OFFLINE_HEADER = "X-Offline-Queued-At"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.ASCII)


def is_offline(header_value: str | None) -> bool:
    """Was the request queued offline? A malformed header is the client's error (400)."""
    if header_value is None:
        return False
    if not _RFC3339.fullmatch(header_value.strip()):
        raise ValidationFailed(
            f"{OFFLINE_HEADER} must be an RFC 3339 date-time",
            issues=[Issue("not RFC 3339", OFFLINE_HEADER)],
        )
    return True


def refuse_offline_create(resource_type: str, resource: Any) -> None:
    """422 OFFLINE_CREATE_NOT_ALLOWED for a medication or referral order from a queue."""
    if resource_type == "MedicationRequest":
        kind = "medication"
    elif resource_type == "ServiceRequest" and isinstance(resource, dict) and is_referral(resource):
        kind = "referral"
    else:
        return
    raise OfflineCreateNotAllowed(
        f"{kind} orders cannot be created from an offline queue; submit them while connected"
    )


def refuse_offline_order_set() -> None:
    raise OfflineCreateNotAllowed(
        "order sets cannot be instantiated from an offline queue; apply them while connected"
    )
