"""CODE_DISPLAY_MISMATCH: a known code whose display names a different drug (DESIGN §6).

Codes are authoritative, displays are not. The seed's own example, RxNorm 1049502 shown as
"Amoxicillin 500mg", is in fact "12 HR Oxycodone Hydrochloride 10 MG Extended Release Oral
Tablet": every other rule reads the code, so no amoxicillin rule fires on it, and this rule
warns that the display is misleading. Checked: each known coding's own `display`, and the
concept's `text` against each known drug.

Cause: `display:<rxcui>` (one alert per known drug, whatever the number of bad labels).
"""

from __future__ import annotations

from app.cds.alerts import CODE_DISPLAY, Alert
from app.cds.context import OrderContext, known_drugs, medication_concept, system_label
from app.cds.knowledge_base import KnowledgeBase

RULE_ID = "CODE_DISPLAY_MISMATCH"
SOURCE = "DESIGN §6: codes are authoritative, displays are not (RxNorm code table)"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    concept = medication_concept(ctx.order) or {}
    text = concept.get("text")
    alerts: list[Alert] = []
    for known in known_drugs(ctx.order, kb):
        labels = [known.coding.get("display"), text]
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                continue
            other = kb.display_names_other_drug(known.drug, label)
            if other is None:
                continue
            code = f"{system_label(known.coding.get('system'))} {known.coding['code']}"
            alerts.append(
                Alert(
                    rule_id=RULE_ID,
                    level="warning",
                    message=(
                        f"{code} is {known.drug.name}, but the display says '{label}'. "
                        "Codes are authoritative; check the order."
                    ),
                    code=CODE_DISPLAY,
                    cause=f"display:{known.drug.rxcui}",
                    source=SOURCE,
                    detail=(
                        f"The order is coded {code}, which is **{known.drug.name}**, but it "
                        f"is labelled '{label}', which names {other}. Decision support used "
                        f"the code ({known.drug.name}); if {other} was meant, correct the "
                        "code."
                    ),
                )
            )
            break
    return alerts
