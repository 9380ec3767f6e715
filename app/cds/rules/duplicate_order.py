"""Duplicate order: the same thing already ordered for the patient (DESIGN §6).

Only orders of the same resource type are compared, and only those the caller says count
(draft/active/on-hold at create, active/on-hold at activation):

* ServiceRequest — any `(system, code)` coding of `code` in common (the same imaging
  procedure, …). A LOINC test looks back over a per-code window (duplicates.json: CBC 24 h,
  HbA1c 90 days) on open *and* completed orders: a CBC completed this morning is a duplicate,
  one active for a week is not ("any open order forever" was noise);
* MedicationRequest — a shared ingredient (amoxicillin capsules and amoxicillin/clavulanate),
  named, or, when either drug cannot be resolved, an exact `(system, code)` coding in common;
* NutritionOrder — any coding of `oralDiet.type` in common.

One warning per ordered thing, naming the other orders (the first few, then a count), so a
patient with many open orders of one code gets one alert, not one per order. Cause:
`dup:<type>:<shared codes>` — stable while any duplicate remains, gone when none does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.cds.alerts import DUPTHPY, Alert
from app.cds.context import (
    COUNTING_STATUSES,
    OrderContext,
    codings,
    concept_label,
    medication_concept,
    reference,
    status_of,
)
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import LOINC_SYSTEM
from app.cds.resolve import resolve

RULE_ID = "DUPLICATE-ORDER"
SOURCE = (
    "Same order already open (DESIGN §6); lab look-back windows: app/cds/knowledge/duplicates.json"
)

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


def _label(concepts: list[Any]) -> str:
    """The first concept's label; only called once a concept has a code, so never empty."""
    return next(label for concept in concepts if (label := concept_label(concept)))


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
        source=SOURCE,
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
    what = _label(concepts_of(ctx.order))
    open_statuses = COUNTING_STATUSES[ctx.hook]
    matches: list[tuple[dict[str, Any], set[Code], str]] = []
    for other in ctx.others_of_type(rtype):
        theirs = _codes(concepts_of(other))
        shared = mine & theirs
        if shared and _counts(other, shared, ctx, kb, open_statuses):
            matches.append((other, theirs, ", ".join(f"{s}|{c}" for s, c in sorted(shared))))
    return [_alert(what, rtype, matches)] if matches else []


def _when(resource: dict[str, Any]) -> datetime | None:
    """When an order happened for the look-back: authoredOn, else its last update."""
    completed = status_of(resource) == "completed"
    found = resource.get("meta")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    values = [] if completed else [resource.get("authoredOn")]
    values.append(meta.get("lastUpdated"))
    for value in values:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)  # Python 3.11 reads `Z`; "" is a ValueError
            except ValueError:  # a year or year-month only (FHIR allows them): try the next
                continue
    return None


def _counts(
    other: dict[str, Any],
    shared: set[Code],
    ctx: OrderContext,
    kb: KnowledgeBase,
    open_statuses: frozenset[str],
) -> bool:
    """Open orders always count, except LOINC tests older than their window; completed
    orders count only for LOINC tests within the window."""
    status = status_of(other)
    loinc = [code for system, code in shared if system == LOINC_SYSTEM]
    if not loinc or ctx.now is None:
        return status in open_statuses
    if status not in open_statuses and status != "completed":
        return False
    when = _when(other)
    if when is None:
        return status in open_statuses
    if when.tzinfo is None or ctx.now.tzinfo is None:
        return status in open_statuses
    hours = max(kb.lab_windows.window(code) for code in loinc)
    return ctx.now - when <= timedelta(hours=hours)


def _medications(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    concept = medication_concept(ctx.order)
    mine_codes = _codes([concept])
    mine = resolve(ctx.order, ctx, kb)
    # unresolved: a match needs a shared code, so the concept has a coded label
    what = mine.name if mine.ok else concept_label(concept)
    matches: list[tuple[dict[str, Any], set[Code], str]] = []
    for other in ctx.others_of_type("MedicationRequest"):
        other_codes = _codes([medication_concept(other)])
        theirs = resolve(other, ctx, kb)
        if mine.ok and theirs.ok:
            shared_ingredients = mine.ingredients & theirs.ingredients
            if shared_ingredients:
                names = ", ".join(sorted(kb.ingredient_name(i) for i in shared_ingredients))
                matches.append((other, other_codes, f"same ingredient: {names}"))
            continue
        shared = mine_codes & other_codes
        if shared:
            matches.append((other, other_codes, ", ".join(f"{s}|{c}" for s, c in sorted(shared))))
    return [_alert(what, "MedicationRequest", matches)] if matches else []
