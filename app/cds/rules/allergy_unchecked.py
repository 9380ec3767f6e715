"""A medication allergy decision support cannot read: say so (issue 12).

An active medication allergy whose codes resolve to nothing and whose text names no drug or
class the knowledge base knows cannot be compared with any order. Before, it was dropped
silently; now every medication order for the patient gets a warning "allergy could not be
checked" naming the record, to acknowledge before activation.

Cause: `allergy-unchecked:<AllergyIntolerance ref or codes>`.
"""

from __future__ import annotations

from app.cds.alerts import ALGY, Alert
from app.cds.context import OrderContext, codings, concept_label, reference
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import resolve
from app.cds.rules.allergy_facts import allergens, kind, medication_allergies
from app.cds.rules.unknown_drug import SOURCE

RULE_ID = "ALLERGY-UNCHECKED"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    ordered = resolve(ctx.order, ctx, kb)
    drug = ordered.name if ordered.ok else "the ordered medication"
    alerts: list[Alert] = []
    for allergy in medication_allergies(ctx):
        if allergens(allergy, kb, ctx.resolved_codes):
            continue
        code = allergy.get("code")
        shown = ", ".join(f"{c.get('system', '')}|{c['code']}" for c in codings(code))
        label = concept_label(code) or shown or "no code or text"
        ref = reference(allergy)
        key = ref or f"AllergyIntolerance?code={shown or label}"
        message = (
            f"{kind(allergy)} could not be checked: '{label}' is not a drug or drug class "
            f"decision support knows, so {drug} was not checked against it."
        )
        alerts.append(
            Alert(
                rule_id=RULE_ID,
                level="warning",
                message=message,
                code=ALGY,
                cause=f"allergy-unchecked:{key}",
                implicated=(ref,) if ref else (),
                source=SOURCE,
                detail=f"{message} Review the allergy record with the patient before giving.",
            )
        )
    return alerts
