"""Drug-drug interaction: the ordered drug against the patient's other medication orders.

The other orders are those the caller says count (draft/active/on-hold at create,
active/on-hold at activation). Both drugs are resolved by CODE through the knowledge base;
an order whose drug is unknown is skipped here (DRUG-UNKNOWN reports it for the order being
checked). Each interaction the knowledge base lists for the pair is one alert, its rule id
the interaction id (`DDI-AMOX-WARFARIN`): `contraindicated` → hard-stop (the ONC
high-priority pairs are all contraindicated), `major` / `moderate` → warning.

Cause: `ddi:<interaction id>:<other order ref>` — the same pair with the same other order
is the same alert on a re-run; when that order is stopped the cause is gone.
"""

from __future__ import annotations

from typing import Any

from app.cds.alerts import DRG, Alert, Level
from app.cds.context import (
    OrderContext,
    codings,
    drug_label,
    known_drugs,
    medication_concept,
    reference,
    status_of,
)
from app.cds.knowledge_base import Interaction, KnowledgeBase

LEVELS: dict[str, Level] = {
    "contraindicated": "hard-stop",
    "major": "warning",
    "moderate": "warning",
}


def level_for(interaction: Interaction) -> Level:
    return LEVELS.get(interaction.severity, "warning")


def other_key(other: dict[str, Any]) -> str:
    """The other order's reference, or (no id, e.g. an unsaved draft) its codes."""
    ref = reference(other)
    if ref:
        return ref
    codes = sorted(f"{c.get('system', '')}|{c['code']}" for c in codings(medication_concept(other)))
    return "MedicationRequest?code=" + ",".join(codes)


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    ordered = known_drugs(ctx.order, kb)
    if not ordered:
        return []
    drug = drug_label(ordered)
    alerts: list[Alert] = []
    for other in ctx.others_of_type("MedicationRequest"):
        theirs = known_drugs(other, kb)
        if not theirs:
            continue
        key = other_key(other)
        ref = reference(other)
        seen: set[str] = set()
        for mine in ordered:
            for them in theirs:
                for interaction in kb.interactions(mine.drug, them.drug):
                    if interaction.id in seen:
                        continue
                    seen.add(interaction.id)
                    level = level_for(interaction)
                    onc = (
                        " It is on the ONC high-priority list (Phansalkar et al., 2012)."
                        if interaction.onc_high_priority
                        else ""
                    )
                    alerts.append(
                        Alert(
                            rule_id=interaction.id,
                            level=level,
                            message=interaction.message,
                            code=DRG,
                            cause=f"ddi:{interaction.id}:{key}",
                            implicated=(ref,) if ref else (),
                            source=interaction.source,
                            detail=(
                                f"{interaction.message}\n\n"
                                f"Interaction ({interaction.severity}) between the ordered "
                                f"**{drug}** and **{drug_label(theirs)}** "
                                f"({key}, {status_of(other)}).{onc}"
                            ),
                        )
                    )
    return alerts
