"""A medication the knowledge base cannot map to ingredients: say so, never stay silent.

A MedicationRequest none of whose codings the knowledge base knows — an unknown RxNorm
code, a local code, text only, or a `medicationReference` to a Medication outside the order
— gets an `info` alert: the allergy and interaction checks could not be done for it.

Cause: `unknown:<system>|<code>[,…]` (all codings, sorted), `unknown:reference:<ref>` or
`unknown:text:<text>`.
"""

from __future__ import annotations

from app.cds.alerts import KNOWLEDGE_GAP, Alert
from app.cds.context import (
    OrderContext,
    codings,
    concept_label,
    known_drugs,
    medication_concept,
    system_label,
)
from app.cds.knowledge_base import KnowledgeBase

RULE_ID = "DRUG-UNKNOWN"
NOT_DONE = "not in the knowledge base; allergy and interaction checks were not performed"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest" or known_drugs(ctx.order, kb):
        return []
    concept = medication_concept(ctx.order)
    codes = codings(concept)
    if codes:
        shown = ", ".join(f"{system_label(c.get('system'))} {c['code']}" for c in codes)
        label = concept_label(concept)
        what = f"{label} ({shown})" if label and label != shown else shown
        cause = "unknown:" + ",".join(sorted(f"{c.get('system', '')}|{c['code']}" for c in codes))
    else:
        ref = ctx.order.get("medicationReference")
        ref_text = (
            str(ref.get("reference") or ref.get("display") or "") if isinstance(ref, dict) else ""
        )
        text = concept_label(concept)
        if ref_text:
            what, cause = f"The referenced medication {ref_text}", f"unknown:reference:{ref_text}"
        elif text:
            what, cause = f"{text} (no code)", f"unknown:text:{text}"
        else:
            what, cause = "The ordered medication (no code)", "unknown:none"
    return [
        Alert(
            rule_id=RULE_ID,
            level="info",
            message=f"{what} is {NOT_DONE}.",
            code=KNOWLEDGE_GAP,
            cause=cause,
            detail=(
                f"{what} is {NOT_DONE}. Check allergies and interactions by other means, "
                "or order the drug by its RxNorm code."
            ),
        )
    ]
