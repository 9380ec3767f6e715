"""Drug-drug interaction: the ordered drug against the patient's other medication orders.

The other orders are those the caller says count (draft/active/on-hold at create,
active/on-hold at activation). Both drugs are resolved (app/cds/resolve.py: code, product
table, terminology service, Medication ingredients, name); an order whose drug cannot be
resolved is reported by DRUG-UNKNOWN / DRUG-UNKNOWN-OTHER, never skipped silently. Each
interaction the knowledge base lists for the pair is one alert, its rule id the interaction
id (`DDI-AMOX-WARFARIN`): `contraindicated` → hard-stop (the ONC high-priority pairs and
PDE5 inhibitor + nitrate), `major` / `moderate` → warning. The message names both drugs.

Cause: `ddi:<interaction id>:<other order ref>` — the same pair with the same other order
is the same alert on a re-run; when that order is stopped the cause is gone.
"""

from __future__ import annotations

from typing import Any

from app.cds.alerts import DRG, Alert, Level
from app.cds.context import OrderContext, codings, medication_concept, reference, status_of
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import Interaction
from app.cds.resolve import Resolution, resolve

LEVELS: dict[str, Level] = {
    "contraindicated": "hard-stop",
    "major": "warning",
    "moderate": "warning",
}


def level_for(interaction: Interaction) -> Level:
    """The knowledge base admits only the severities listed here (its schema refuses others)."""
    return LEVELS[interaction.severity]


def other_key(other: dict[str, Any]) -> str:
    """The other order's reference, or (no id, e.g. an unsaved draft) its codes."""
    ref = reference(other)
    if ref:
        return ref
    codes = sorted(f"{c.get('system', '')}|{c['code']}" for c in codings(medication_concept(other)))
    return "MedicationRequest?code=" + ",".join(codes)


def short_name(resolution: Resolution, kb: KnowledgeBase) -> str:
    """Ingredient names ("amoxicillin / clavulanate"), marked when matched by name."""
    names = (
        " / ".join(sorted(kb.ingredient_name(i) for i in resolution.ingredients)) or resolution.name
    )
    return f"{names} (matched by name)" if resolution.by_name else names


def message_for(
    interaction: Interaction, kb: KnowledgeBase, mine: Resolution, theirs: Resolution
) -> str:
    """The rule's message, naming both drugs when it does not already (the seed's
    "Amoxicillin + Warfarin" does; "Warfarin + NSAID" gets "(ibuprofen with warfarin)")."""
    text = interaction.message
    lowered = text.casefold()

    def named(resolution: Resolution) -> bool:
        return any(kb.ingredient_name(i).casefold() in lowered for i in resolution.ingredients)

    if named(mine) and named(theirs) and not (mine.by_name or theirs.by_name):
        return text
    return f"{text} ({short_name(mine, kb)} with {short_name(theirs, kb)})"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    ordered = resolve(ctx.order, ctx, kb)
    if not ordered.ok:
        return []
    alerts: list[Alert] = []
    for other in ctx.others_of_type("MedicationRequest"):
        theirs = resolve(other, ctx, kb)
        if not theirs.ok:
            continue
        key = other_key(other)
        ref = reference(other)
        seen: set[str] = set()
        for mine in ordered.drugs:
            for them in theirs.drugs:
                for interaction in kb.interactions(mine, them):
                    if interaction.id in seen:
                        continue
                    seen.add(interaction.id)
                    onc = (
                        " It is on the ONC high-priority list (Phansalkar et al., 2012)."
                        if interaction.onc_high_priority
                        else ""
                    )
                    message = message_for(interaction, kb, ordered, theirs)
                    alerts.append(
                        Alert(
                            rule_id=interaction.id,
                            level=level_for(interaction),
                            message=message,
                            code=DRG,
                            cause=f"ddi:{interaction.id}:{key}",
                            implicated=(ref,) if ref else (),
                            source=interaction.source,
                            detail=(
                                f"{message}\n\n"
                                f"Interaction ({interaction.severity}) between the ordered "
                                f"**{ordered.name}** and **{theirs.name}** "
                                f"({key}, {status_of(other)}).{onc}"
                            ),
                        )
                    )
    return alerts
