"""An unidentifiable drug among the patient's OTHER medication orders: say so (issue 12).

Before, an order on file whose drug the knowledge base did not know was skipped with no
alert: a new warfarin order next to it was "checked" against nothing. Now each such order
gives a warning naming it, so the prescriber acknowledges that this pair was not checked.

Cause: `unknown-other:<other order ref or codes>` (gone when that order stops counting or
becomes resolvable).
"""

from __future__ import annotations

from app.cds.alerts import KNOWLEDGE_GAP, Alert
from app.cds.context import OrderContext, reference, status_of
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import describe, resolve
from app.cds.rules.drug_interaction import other_key
from app.cds.rules.unknown_drug import SOURCE

RULE_ID = "DRUG-UNKNOWN-OTHER"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    ordered = resolve(ctx.order, ctx, kb)
    mine = ordered.name if ordered.ok else "the ordered medication"
    alerts: list[Alert] = []
    for other in ctx.others_of_type("MedicationRequest"):
        theirs = resolve(other, ctx, kb)
        if theirs.ok:
            continue
        key = other_key(other)
        ref = reference(other)
        what = describe(theirs)
        message = (
            f"{what}, on this patient's orders ({key}, {status_of(other)}), could not be "
            f"identified ({theirs.problem}): {mine} was not checked against it."
        )
        alerts.append(
            Alert(
                rule_id=RULE_ID,
                level="warning",
                message=message,
                code=KNOWLEDGE_GAP,
                cause=f"unknown-other:{key}",
                implicated=(ref,) if ref else (),
                source=SOURCE,
                detail=f"{message} Check this pair for interactions and duplication by hand.",
            )
        )
    return alerts
