"""Drug-allergy: the ordered drug against the patient's allergies (DESIGN §6).

Which allergies count: `clinicalStatus` active (or absent) and `verificationStatus` not
`refuted` / `entered-in-error` (unconfirmed counts: an unverified penicillin allergy is
still a reason to stop and look). Resolved and inactive allergies do not count.

What an allergy is to: every coding of `AllergyIntolerance.code` and of
`reaction[].substance`, resolved by the knowledge base (RxNorm ingredients and products,
SNOMED CT substances and classes) to ingredients and drug classes.

What matches, per allergy (only the strongest match is reported):

* ALLERGY-DRUG — the allergen shares an ingredient with the ordered drug
  (amoxicillin allergy, amoxicillin or amoxicillin/clavulanate order);
* ALLERGY-CLASS — a class-level allergy to one of the ordered drug's own classes
  (SNOMED 764146007 penicillin allergy, amoxicillin order);
* ALLERGY-SAME-CLASS — an ingredient-level allergy to ANOTHER member of an allergy-relevant
  class of the ordered drug (penicillin G or amoxicillin allergy, ampicillin order). The
  knowledge base deliberately keeps ingredient allergies at ingredient level; this rule
  still says so, as a warning, rather than stay silent;
* ALLERGY-CROSS-REACTIVITY — the knowledge base lists a cross-reactivity from the
  allergen's class (or an allergy-relevant class of its ingredients) to one of the drug's
  classes (penicillin allergy, cephalexin order), with its caveat.

The first two follow the allergy's criticality: `high` is a hard-stop, and so is a recorded
severe reaction or anaphylaxis (`reaction.severity = severe`, SNOMED CT 39579001) — anything
else (`low`, `unable-to-assess`, absent) a warning. The last two are always warnings. An
`intolerance` is called one in the message. An allergy matched through its text rather than a
code says "matched by name"; an ordered drug identified by name says so too.

Cause: `allergy:<AllergyIntolerance ref>:<match>:<ingredients or classes>:<level>`. The
level is part of the cause because it depends on the allergy record: when its criticality
changes, the old alert's cause is gone (resolved) and a new one is raised, so an
acknowledged warning can never hide a hard-stop.
"""

from __future__ import annotations

from typing import Any

from app.cds.alerts import ALGY, Alert, Level
from app.cds.context import OrderContext, codings, reference
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import resolve
from app.cds.rules.allergy_facts import (
    Resolved,
    allergens,
    counts,
    kind,
    medication_allergies,
    severe,
)

__all__ = ["allergens", "check", "counts", "level_for"]

RULE_DRUG = "ALLERGY-DRUG"
RULE_CLASS = "ALLERGY-CLASS"
RULE_SAME_CLASS = "ALLERGY-SAME-CLASS"
RULE_CROSS = "ALLERGY-CROSS-REACTIVITY"

ALLERGY_GROUP_CLASSES = (
    "penicillins",
    "cephalosporins",
    "sulfonamide-antibiotics",
    "nsaids",
    "opioids",
)
"""Class ids where an allergy to one member matters for the others; classes in a
cross-reactivity entry count too. Pharmacological classes used only for interactions
(QT-prolonging, CYP3A4 inhibitors, …) never do."""
INGREDIENT_SOURCE = "RxNorm ingredient mapping (app/cds/knowledge/drugs.json, products.json)"


def level_for(allergy: dict[str, Any]) -> Level:
    if allergy.get("criticality") == "high" or severe(allergy):
        return "hard-stop"
    return "warning"


def _allergy_key(allergy: dict[str, Any]) -> str:
    ref = reference(allergy)
    if ref:
        return ref
    codes = sorted(f"{c.get('system', '')}|{c['code']}" for c in codings(allergy.get("code")))
    return "AllergyIntolerance?code=" + ",".join(codes)


def _allergy_label(allergy: dict[str, Any], resolved: list[Resolved]) -> str:
    """What the allergy is to, in the knowledge base's words (codes are authoritative), with
    the record's own text when it says something else."""
    label = resolved[0].allergen.label
    if resolved[0].by_name:
        return f"{label} (matched by name)"
    found = allergy.get("code")
    code: dict[str, Any] = found if isinstance(found, dict) else {}
    words = [code.get("text"), *(c.get("display") for c in codings(code))]
    text = next((str(w) for w in words if w), "")
    if text and text.casefold() not in label.casefold():
        return f"{label} (recorded as '{text}')"
    return label


def group_classes(kb: KnowledgeBase) -> frozenset[str]:
    """Classes within which an allergy to one member is a warning for the others."""
    named = {c for c in ALLERGY_GROUP_CLASSES if kb.drug_class(c) is not None}
    for entry in kb.cross_reactivity:
        named |= {entry.from_class, entry.to_class}
    return frozenset(named)


def _class_names(kb: KnowledgeBase, ids: frozenset[str]) -> str:
    names = []
    for class_id in sorted(ids):
        found = kb.drug_class(class_id)
        names.append(found.name if found else class_id)
    return ", ".join(names)


def _ingredient_names(kb: KnowledgeBase, ids: frozenset[str]) -> str:
    names = []
    for rxcui in sorted(ids, key=lambda c: (len(c), c)):
        names.append(kb.ingredient_name(rxcui))
    return ", ".join(names)


def _class_sources(kb: KnowledgeBase, ids: frozenset[str]) -> str:
    sources = []
    for class_id in sorted(ids):
        found = kb.drug_class(class_id)
        if found and found.source:
            sources.append(found.source)
    return "; ".join(dict.fromkeys(sources))


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    ordered = resolve(ctx.order, ctx, kb)
    if not ordered.ok:
        return []  # DRUG-UNKNOWN says the check could not be done
    drug = ordered.name
    groups = group_classes(kb)

    alerts: list[Alert] = []
    for allergy in medication_allergies(ctx):
        resolved = allergens(allergy, kb, ctx.resolved_codes)
        if not resolved:
            continue  # ALLERGY-UNCHECKED says this allergy could not be checked
        found = _match(allergy, resolved, ordered.ingredients, ordered.classes, groups, kb)
        if found is None:
            continue
        rule, level, match, keys, reason, source = found
        label = _allergy_label(allergy, resolved)
        criticality = allergy.get("criticality") or "not recorded"
        why = severe(allergy)
        history = f"; history of {why}" if why else ""
        what = kind(allergy)
        allergy_ref = reference(allergy)
        alerts.append(
            Alert(
                rule_id=rule,
                level=level,
                message=(
                    f"{what} to {label} (criticality {criticality}{history}): the ordered "
                    f"{drug} {reason}."
                ),
                code=ALGY,
                cause=f"allergy:{_allergy_key(allergy)}:{match}:{','.join(sorted(keys))}:{level}",
                implicated=(allergy_ref,) if allergy_ref else (),
                source=source,
                detail=(
                    f"The patient has an active {what.lower()} to **{label}** "
                    f"(criticality: {criticality}{history}). The ordered drug, **{drug}**, "
                    f"{reason}."
                ),
            )
        )
    return alerts


_Match = tuple[str, Level, str, frozenset[str], str, str]


def _match(
    allergy: dict[str, Any],
    resolved: list[Resolved],
    ingredients: frozenset[str],
    classes: frozenset[str],
    groups: frozenset[str],
    kb: KnowledgeBase,
) -> _Match | None:
    """The strongest match of one allergy against the ordered drug, or None."""
    a_ingredients: frozenset[str] = frozenset().union(*(r.allergen.ingredients for r in resolved))
    a_classes: frozenset[str] = frozenset().union(*(r.allergen.classes for r in resolved))
    # Classes the allergen's ingredients belong to, among the allergy-relevant ones only
    # (an allergy to ciprofloxacin says nothing about other QT-prolonging drugs).
    related: frozenset[str] = frozenset().union(*(kb.classes_of(i) for i in a_ingredients)) & groups

    shared = a_ingredients & ingredients
    if shared:
        reason = f"contains {_ingredient_names(kb, shared)}"
        return RULE_DRUG, level_for(allergy), "ingredient", shared, reason, INGREDIENT_SOURCE
    shared = a_classes & classes
    if shared:
        names = _class_names(kb, shared)
        reason = f"is one of the {names}"
        return RULE_CLASS, level_for(allergy), "class", shared, reason, _class_sources(kb, shared)
    shared = related & classes
    if shared:
        names = _class_names(kb, shared)
        reason = f"is in the same drug class ({names}) as {_ingredient_names(kb, a_ingredients)}"
        return RULE_SAME_CLASS, "warning", "same-class", shared, reason, _class_sources(kb, shared)
    crosses = kb.cross_reactions(a_classes | related, classes)
    if crosses:
        notes = " ".join(dict.fromkeys(c.note for c in crosses))
        pairs = frozenset(f"{c.from_class}>{c.to_class}" for c in crosses)
        targets = _class_names(kb, classes & {c.to_class for c in crosses})
        reason = f"may cross-react ({targets}). {notes}"
        source = "; ".join(dict.fromkeys(c.source for c in crosses))
        return RULE_CROSS, "warning", "cross", pairs, reason.rstrip("."), source
    return None
