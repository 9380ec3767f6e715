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

The first two follow the allergy's criticality: `high` is a hard-stop, anything else
(`low`, `unable-to-assess`, absent) a warning. The last two are always warnings.

Cause: `allergy:<AllergyIntolerance ref>:<match>:<ingredients or classes>:<level>`. The
level is part of the cause because it depends on the allergy record: when its criticality
changes, the old alert's cause is gone (resolved) and a new one is raised, so an
acknowledged warning can never hide a hard-stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.cds.alerts import ALGY, Alert, Level
from app.cds.context import (
    OrderContext,
    codings,
    drug_label,
    known_drugs,
    reference,
    refers_to_patient,
)
from app.cds.knowledge_base import Allergen, KnowledgeBase

RULE_DRUG = "ALLERGY-DRUG"
RULE_CLASS = "ALLERGY-CLASS"
RULE_SAME_CLASS = "ALLERGY-SAME-CLASS"
RULE_CROSS = "ALLERGY-CROSS-REACTIVITY"

ALLERGY_GROUP_CLASSES = ("penicillins", "cephalosporins", "sulfonamide-antibiotics", "nsaids")
"""Class ids where an allergy to one member matters for the others (issue 3 names these);
classes in a cross-reactivity entry count too. Pharmacological classes used only for
interactions (QT-prolonging, CYP3A4 inhibitors, …) never do."""
INGREDIENT_SOURCE = "RxNorm ingredient mapping (app/cds/knowledge/drugs.json)"

_NOT_COUNTING_CLINICAL = frozenset({"inactive", "resolved"})
_NOT_COUNTING_VERIFICATION = frozenset({"refuted", "entered-in-error"})


def _status_codes(concept: Any) -> set[str]:
    return {str(c["code"]) for c in codings(concept)}


def counts(allergy: dict[str, Any]) -> bool:
    """Whether an AllergyIntolerance is in force for decision support."""
    if allergy.get("resourceType", "AllergyIntolerance") != "AllergyIntolerance":
        return False
    clinical = _status_codes(allergy.get("clinicalStatus"))
    if clinical and "active" not in clinical:
        return False
    if clinical & _NOT_COUNTING_CLINICAL:
        return False
    return not _status_codes(allergy.get("verificationStatus")) & _NOT_COUNTING_VERIFICATION


def level_for(allergy: dict[str, Any]) -> Level:
    return "hard-stop" if allergy.get("criticality") == "high" else "warning"


@dataclass(frozen=True)
class _Resolved:
    allergen: Allergen
    coding: dict[str, Any]


def allergens(allergy: dict[str, Any], kb: KnowledgeBase) -> list[_Resolved]:
    """What the allergy is to, as the knowledge base knows it (unknown codes drop out)."""
    concepts = [allergy.get("code")]
    for reaction in allergy.get("reaction") or ():
        if isinstance(reaction, dict):
            concepts.append(reaction.get("substance"))
    found: list[_Resolved] = []
    for concept in concepts:
        for coding in codings(concept):
            allergen = kb.allergen(str(coding.get("system") or ""), str(coding["code"]))
            if allergen is not None:
                found.append(_Resolved(allergen, coding))
    return found


def _allergy_key(allergy: dict[str, Any]) -> str:
    ref = reference(allergy)
    if ref:
        return ref
    codes = sorted(f"{c.get('system', '')}|{c['code']}" for c in codings(allergy.get("code")))
    return "AllergyIntolerance?code=" + ",".join(codes)


def _allergy_label(allergy: dict[str, Any], resolved: list[_Resolved]) -> str:
    """What the allergy is to, in the knowledge base's words (codes are authoritative), with
    the record's own text when it says something else."""
    label = resolved[0].allergen.label
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
        found = kb.drug(None, rxcui)
        names.append(found.name if found else f"RxNorm {rxcui}")
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
    ordered = known_drugs(ctx.order, kb)
    if not ordered:
        return []  # DRUG-UNKNOWN says the check could not be done
    ingredients: frozenset[str] = frozenset().union(*(k.drug.ingredients for k in ordered))
    classes: frozenset[str] = frozenset().union(*(k.drug.classes for k in ordered))
    drug = drug_label(ordered)
    groups = group_classes(kb)

    alerts: list[Alert] = []
    for allergy in ctx.allergies:
        if not counts(allergy) or not refers_to_patient(allergy, ctx.patient_id):
            continue
        resolved = allergens(allergy, kb)
        if not resolved:
            continue
        found = _match(allergy, resolved, ingredients, classes, groups, kb)
        if found is None:
            continue
        rule, level, match, keys, reason, source = found
        label = _allergy_label(allergy, resolved)
        criticality = allergy.get("criticality") or "not recorded"
        allergy_ref = reference(allergy)
        alerts.append(
            Alert(
                rule_id=rule,
                level=level,
                message=(
                    f"Allergy to {label} (criticality {criticality}): the ordered {drug} {reason}."
                ),
                code=ALGY,
                cause=f"allergy:{_allergy_key(allergy)}:{match}:{','.join(sorted(keys))}:{level}",
                implicated=(allergy_ref,) if allergy_ref else (),
                source=source,
                detail=(
                    f"The patient has an active allergy to **{label}** "
                    f"(criticality: {criticality}). The ordered drug, **{drug}**, {reason}."
                ),
            )
        )
    return alerts


_Match = tuple[str, Level, str, frozenset[str], str, str]


def _match(
    allergy: dict[str, Any],
    resolved: list[_Resolved],
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
