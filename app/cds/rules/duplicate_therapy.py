"""Duplicate therapy by class: two drugs where the duplication itself is the risk (issue 12).

Groups come from app/cds/knowledge/duplicates.json: two NSAIDs, ACE inhibitor + ARB, two
SSRIs, two PPIs, two statins, two opioids, two DOACs. Orders sharing an ingredient are the
duplicate-order rule's (same ingredient across products); this rule only fires for different
ingredients. One warning per group, naming the other orders.

Cause: `dup-class:<group id>` — stable while any duplicate of the group remains.
"""

from __future__ import annotations

from app.cds.alerts import DUPTHPY, Alert
from app.cds.context import OrderContext, reference, status_of
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import resolve
from app.cds.rules.drug_interaction import other_key, short_name

RULE_ID = "DUPLICATE-THERAPY"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":  # without therapy groups nothing is found below
        return []
    ordered = resolve(ctx.order, ctx, kb)
    if not ordered.ok:
        return []
    found: dict[str, list[tuple[str, str | None, str]]] = {}
    for other in ctx.others_of_type("MedicationRequest"):
        theirs = resolve(other, ctx, kb)
        if not theirs.ok or ordered.ingredients & theirs.ingredients:
            continue
        for group in kb.therapy_groups:
            if ordered.classes & group.classes and theirs.classes & group.classes:
                label = f"{short_name(theirs, kb)} ({other_key(other)}, {status_of(other)})"
                found.setdefault(group.id, []).append((label, reference(other), other_key(other)))
    alerts: list[Alert] = []
    mine = short_name(ordered, kb)
    for group in kb.therapy_groups:
        entries = found.get(group.id)
        if not entries:
            continue
        others = "; ".join(label for label, _r, _k in entries)
        message = f"Duplicate therapy ({group.name}): {mine} with {others}."
        alerts.append(
            Alert(
                rule_id=RULE_ID,
                level="warning",
                message=message,
                code=DUPTHPY,
                cause=f"dup-class:{group.id}",
                implicated=tuple(r for _l, r, _k in entries if r),
                source=group.source,
                detail=f"{message} Stop one of them, or acknowledge if both are intended.",
            )
        )
    return alerts
