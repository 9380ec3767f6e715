"""Which allergy records count, and what they are to: shared by the allergy rules.

Counting: `clinicalStatus` active (or absent), `verificationStatus` not `refuted` /
`entered-in-error` (unconfirmed counts), the patient's own, and a medication allergy —
`category` absent or including `medication` (a peanut allergy says nothing about drugs).

What an allergy is to: every coding of `code` and of `reaction[].substance`, resolved by the
knowledge base; when no coding resolves, the record's text and displays are read for drug and
class names ("Penicillins", "sulfa drugs", "Allergy to sulfonamide (finding)") — reported
as "matched by name".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.cds.context import OrderContext, codings, concept_label, refers_to_patient
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import Allergen, Drug, is_rxnorm

_NOT_COUNTING_VERIFICATION = frozenset({"refuted", "entered-in-error"})
ANAPHYLAXIS = frozenset({"39579001"})
"""SNOMED CT 39579001 Anaphylaxis (disorder)."""


@dataclass(frozen=True)
class Resolved:
    allergen: Allergen
    by_name: bool = False


def _status_codes(concept: Any) -> set[str]:
    return {str(c["code"]) for c in codings(concept)}


def counts(allergy: dict[str, Any]) -> bool:
    """Whether an AllergyIntolerance is in force for decision support."""
    if allergy.get("resourceType", "AllergyIntolerance") != "AllergyIntolerance":
        return False
    clinical = _status_codes(allergy.get("clinicalStatus"))
    if clinical and "active" not in clinical:  # inactive, resolved
        return False
    return not _status_codes(allergy.get("verificationStatus")) & _NOT_COUNTING_VERIFICATION


def is_medication(allergy: dict[str, Any]) -> bool:
    category = allergy.get("category")
    return not category or "medication" in category


def medication_allergies(ctx: OrderContext) -> list[dict[str, Any]]:
    """The patient's allergies that count against a medication order."""
    return [
        a
        for a in ctx.allergies
        if counts(a) and is_medication(a) and refers_to_patient(a, ctx.patient_id)
    ]


def _concepts(allergy: dict[str, Any]) -> list[Any]:
    concepts = [allergy.get("code")]
    for reaction in allergy.get("reaction") or ():
        if isinstance(reaction, dict):
            concepts.append(reaction.get("substance"))
    return concepts


def allergens(
    allergy: dict[str, Any], kb: KnowledgeBase, extra: Mapping[str, Drug] | None = None
) -> list[Resolved]:
    """What the allergy is to: by code (the knowledge base, then `extra`, the codes the
    terminology service resolved), else by the names in its text and displays."""
    found: list[Resolved] = []
    for concept in _concepts(allergy):
        for coding in codings(concept):
            system, code = str(coding.get("system") or ""), str(coding["code"])
            allergen = kb.allergen(system, code)
            looked_up = (extra or {}).get(code) if is_rxnorm(system) else None
            if allergen is None and looked_up is not None:
                allergen = Allergen(looked_up.ingredients, frozenset(), looked_up.name)
            if allergen is not None:
                found.append(Resolved(allergen))
    if found:
        return found
    for concept in _concepts(allergy):
        if not isinstance(concept, dict):
            continue
        texts = [concept.get("text"), *(c.get("display") for c in codings(concept))]
        for text in (str(t) for t in texts if t):
            classes = kb.classes_named_in(text)
            if classes:
                found.append(Resolved(Allergen(frozenset(), classes, text), by_name=True))
            for ingredients, name in kb.names_in(text):
                found.append(Resolved(Allergen(ingredients, frozenset(), name), by_name=True))
            if found:
                return found
    return found


def severe(allergy: dict[str, Any]) -> str | None:
    """Why a reaction history makes the allergy a hard-stop (severe, anaphylaxis), or None."""
    for reaction in allergy.get("reaction") or ():
        if not isinstance(reaction, dict):
            continue
        if reaction.get("severity") == "severe":
            return "a severe reaction"
        for manifestation in reaction.get("manifestation") or ():
            codes = {str(c["code"]) for c in codings(manifestation)}
            if codes & ANAPHYLAXIS or "anaphyla" in concept_label(manifestation).casefold():
                return "anaphylaxis"
    return None


def kind(allergy: dict[str, Any]) -> str:
    """ "Intolerance" or "Allergy", as the record says (absent type: allergy)."""
    return "Intolerance" if allergy.get("type") == "intolerance" else "Allergy"
