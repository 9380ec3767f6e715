"""Duplicate order: the same thing already ordered for the patient (DESIGN §6).

Only orders of the same resource type are compared, and only those the caller says count
(draft/active/on-hold at create, active/on-hold at activation):

* ServiceRequest — any `(system, code)` coding of `code` in common (LOINC 58410-2 CBC
  twice, the same imaging procedure, …);
* MedicationRequest — a shared ingredient according to the knowledge base (amoxicillin
  capsules and amoxicillin/clavulanate), or, when either drug is unknown to it, an exact
  `(system, code)` coding in common;
* NutritionOrder — any coding of `oralDiet.type` in common.

One warning per ordered thing, naming the other orders (the first few, then a count), so a
patient with many open orders of one code gets one alert, not one per order. Cause:
`dup:<type>:<shared codes>` — stable while any duplicate remains, gone when none does.
"""

from __future__ import annotations

from typing import Any

from app.cds.alerts import DUPTHPY, Alert
from app.cds.context import (
    OrderContext,
    codings,
    concept_label,
    drug_label,
    known_drugs,
    medication_concept,
    reference,
    status_of,
)
from app.cds.knowledge_base import KnowledgeBase

RULE_ID = "DUPLICATE-ORDER"

Code = tuple[str, str]


def _codes(concepts: list[Any]) -> set[Code]:
    return {
        (str(c.get("system") or ""), str(c["code"]))
        for concept in concepts
        for c in codings(concept)
    }


def _service_concepts(order: dict[str, Any]) -> list[Any]:
    return [order.get("code")]


def _diet_concepts(order: dict[str, Any]) -> list[Any]:
    diet = order.get("oralDiet")
    if not isinstance(diet, dict):
        return []
    return list(diet.get("type") or ())


def _label(concepts: list[Any], fallback: str) -> str:
    for concept in concepts:
        label = concept_label(concept)
        if label:
            return label
    return fallback


def _key(other: dict[str, Any], codes: set[Code]) -> str:
    return reference(other) or (
        f"{other.get('resourceType')}?code=" + ",".join(sorted(f"{s}|{c}" for s, c in codes))
    )


NAMED = 3
IMPLICATED = 10


def _alert(what: str, rtype: str, matches: list[tuple[dict[str, Any], set[Code], str]]) -> Alert:
    """One warning for all the open orders that duplicate this one."""
    first = matches[0][0]
    keys = [_key(other, codes) for other, codes, _s in matches]
    named = ", ".join(
        f"{key} ({status_of(other)})"
        for key, (other, _c, _s) in list(zip(keys, matches, strict=True))[:NAMED]
    )
    more = f" and {len(matches) - NAMED} more" if len(matches) > NAMED else ""
    shared = sorted({s for _o, _c, s in matches})
    refs = tuple(r for o, _c, _s in matches if (r := reference(o)))[:IMPLICATED]
    if len(matches) == 1:
        message = f"Duplicate order: {what} is already ordered ({keys[0]}, {status_of(first)})"
    else:
        message = f"Duplicate order: {what} is already ordered {len(matches)} times ({named}{more})"
    return Alert(
        rule_id=RULE_ID,
        level="warning",
        message=message,
        code=DUPTHPY,
        cause=f"dup:{rtype}:{';'.join(shared)}",
        implicated=refs,
        detail=(
            f"**{what}** is already ordered for this patient: {named}{more}. "
            f"Shared: {'; '.join(shared)}. Cancel one of them, or acknowledge if both are intended."
        ),
    )


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    rtype = ctx.order_type
    if rtype == "MedicationRequest":
        return _medications(ctx, kb)
    if rtype == "ServiceRequest":
        concepts_of = _service_concepts
    elif rtype == "NutritionOrder":
        concepts_of = _diet_concepts
    else:
        return []
    mine = _codes(concepts_of(ctx.order))
    if not mine:
        return []
    what = _label(concepts_of(ctx.order), "this order")
    matches: list[tuple[dict[str, Any], set[Code], str]] = []
    for other in ctx.others_of_type(rtype):
        theirs = _codes(concepts_of(other))
        shared = mine & theirs
        if shared:
            matches.append((other, theirs, ", ".join(f"{s}|{c}" for s, c in sorted(shared))))
    return [_alert(what, rtype, matches)] if matches else []


def _medications(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    concept = medication_concept(ctx.order)
    mine_codes = _codes([concept])
    mine_known = known_drugs(ctx.order, kb)
    mine_ingredients = frozenset().union(*(k.drug.ingredients for k in mine_known))
    what = drug_label(mine_known) if mine_known else _label([concept], "this medication")
    matches: list[tuple[dict[str, Any], set[Code], str]] = []
    for other in ctx.others_of_type("MedicationRequest"):
        other_concept = medication_concept(other)
        other_codes = _codes([other_concept])
        theirs_known = known_drugs(other, kb)
        if mine_known and theirs_known:
            theirs = frozenset().union(*(k.drug.ingredients for k in theirs_known))
            shared_ingredients = mine_ingredients & theirs
            if shared_ingredients:
                names = ", ".join(sorted(shared_ingredients))
                matches.append((other, other_codes, f"ingredient RxCUI {names}"))
            continue
        shared = mine_codes & other_codes
        if shared:
            matches.append((other, other_codes, ", ".join(f"{s}|{c}" for s, c in sorted(shared))))
    return [_alert(what, "MedicationRequest", matches)] if matches else []
