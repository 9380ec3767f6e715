"""The seed contract's own example payloads (seeds/api-contracts.txt), written once.

Kept verbatim — including RxNorm 1049502 shown as "Amoxicillin 500mg", which the seed gets
wrong (it is an oxycodone tablet; DESIGN §6) — because tests check the server accepts the
seed's wire shapes exactly as written.
"""

from __future__ import annotations

from typing import Any

SEED_ORDER_SET: dict[str, Any] = {
    "name": "Community Acquired Pneumonia Adult",
    "description": "Standard CAP management orders",
    "orderTemplates": [
        {
            "orderType": "medication",
            "orderCode": {"code": "1049502", "system": "rxnorm", "display": "Amoxicillin 500mg"},
            "medicationDetail": {
                "dose": 500,
                "doseUnit": "mg",
                "route": "oral",
                "frequency": "TDS",
                "durationDays": 7,
            },
        },
        {
            "orderType": "laboratory",
            "orderCode": {"code": "58410-2", "system": "LOINC", "display": "CBC"},
            "labDetail": {"priority": "routine"},
        },
    ],
}
