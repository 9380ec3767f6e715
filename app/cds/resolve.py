"""Drug identity: every medication resolves to ingredients, or says why it could not.

In this order (issue 12; DESIGN §6 "codes are authoritative, displays are not"):

1. a coding of the medication's code the knowledge base knows (ingredient, product, or a
   product from the RxNorm import overlay);
2. a coding the terminology service resolved for this evaluation (`ctx.resolved_codes`, filled
   by the service layer before the rules run — rules never do I/O);
3. a FHIR Medication (contained, or referenced and in `ctx.medications`: supplied by a CDS Hooks
   caller, else read from the tenant's store by the service layer): its `code` as above, else
   its `ingredient[].itemCodeableConcept` codings;
4. the RxNorm normalized name in the text or a display
   (`<ingredient> <strength> <unit> [/ <ingredient> …] <dose form> [Brand]`), every component
   an ingredient the knowledge base knows — reported as "matched by name".

A resolution with no drugs carries `problem`: why (unknown code, terminology service did not
answer, no code at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from app.cds.context import OrderContext, codings, concept_label, system_label
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import Drug, is_rxnorm

CODE: Final = "code"
TERMINOLOGY: Final = "terminology service"
INGREDIENTS: Final = "Medication ingredients"
NAME: Final = "name"
#: The problem of an order whose `medicationReference` names a Medication that is neither
#: contained, nor supplied by the caller, nor stored in the tenant: nobody — neither the rules
#: nor the person signing — can tell what drug it is (DRUG-UNKNOWN is then always a warning).
UNREADABLE: Final = "the referenced Medication could not be read"

_BRAND = re.compile(r"\[[^\]]*\]")
_PREFIX = re.compile(
    r"^\s*(?:abuse-deterrent\s+)?(?:\d+(?:\.\d+)?\s+(?:hr|day|actuat|ml)\s+)?", re.I
)
_COMPONENT = re.compile(
    r"^\s*(?P<name>[a-z][a-z ,.'()-]*?)\s+(?P<num>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>mg|mcg|g|unt|meq|ml|%)(?:/(?:ml|actuat|hr|mg))?(?P<rest>(?:\s.*)?)$",
    re.I,
)


@dataclass(frozen=True)
class Resolution:
    """What a medication is, as far as decision support can tell."""

    drugs: tuple[Drug, ...]
    how: str = ""
    label: str = ""
    problem: str = ""
    codes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.drugs)

    @property
    def by_name(self) -> bool:
        return self.how == NAME

    @property
    def ingredients(self) -> frozenset[str]:
        return frozenset().union(*(d.ingredients for d in self.drugs))

    @property
    def classes(self) -> frozenset[str]:
        return frozenset().union(*(d.classes for d in self.drugs))

    @property
    def name(self) -> str:
        """The drug's name(s) for a message; "(matched by name)" when that is how."""
        names = " / ".join(d.name for d in self.drugs) or self.label or "the medication"
        return f"{names} (matched by name)" if self.by_name else names


def medication_resource(order: dict[str, Any], ctx: OrderContext) -> dict[str, Any] | None:
    """The Medication an order references: contained (`#id`), or `Medication/id` as the
    service layer put it in the context (the caller's, else the store's)."""
    ref = order.get("medicationReference")
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    target = ref["reference"]
    if target.startswith("#"):
        for contained in order.get("contained") or ():
            if (
                isinstance(contained, dict)
                and contained.get("resourceType") == "Medication"
                and contained.get("id") == target[1:]
            ):
                return contained
        return None
    found = ctx.medications.get(local_reference(target))
    return found if isinstance(found, dict) else None


def local_reference(reference: str) -> str:
    """`Type/id` of a relative or absolute reference, without `_history`."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:])


def _by_code(concept: Any, ctx: OrderContext, kb: KnowledgeBase) -> tuple[list[Drug], str]:
    drugs: list[Drug] = []
    how = ""
    for coding in codings(concept):
        system, code = str(coding.get("system") or ""), str(coding["code"])
        drug = kb.drug(system, code)
        if drug is not None:
            drugs.append(drug)
            how = how or CODE
            continue
        extra = ctx.resolved_codes.get(code) if is_rxnorm(system) else None
        if extra is not None:
            drugs.append(extra)
            how = how or TERMINOLOGY
    unique = {d.rxcui: d for d in drugs}
    return list(unique.values()), how


def drug_from_name(text: str, kb: KnowledgeBase) -> Drug | None:
    """A drug read from an RxNorm normalized name, every component a known ingredient."""
    cleaned = _PREFIX.sub("", _BRAND.sub(" ", text)).strip()
    parts = [p for p in cleaned.split(" / ")]
    ingredients: list[str] = []
    for index, part in enumerate(parts):
        m = _COMPONENT.match(part)
        if m is None:
            return None
        if index == len(parts) - 1 and not m.group("rest").strip():
            return None  # a normalized name ends with its dose form
        words = m.group("name").split()
        found = None
        while words and found is None:
            found = kb.ingredient_named(" ".join(words))
            words = words[:-1]
        if found is None:
            return None
        ingredients.append(found.rxcui)
    if not ingredients:
        return None
    return kb.product("name:" + "+".join(sorted(set(ingredients))), text.strip(), ingredients)


def _problem(concept: Any, ctx: OrderContext) -> tuple[str, tuple[str, ...]]:
    codes = codings(concept)
    shown = tuple(f"{system_label(c.get('system'))} {c['code']}" for c in codes)
    reasons = [
        ctx.unresolved_codes[str(c["code"])]
        for c in codes
        if str(c["code"]) in ctx.unresolved_codes
    ]
    if reasons:
        return reasons[0], shown
    if codes:
        return "not in the knowledge base", shown
    return "no code", shown


def resolve(order: dict[str, Any], ctx: OrderContext, kb: KnowledgeBase) -> Resolution:
    """Resolve the medication of a MedicationRequest (memoised per evaluation)."""
    key = id(order)
    cached = ctx.memo.get(key)
    if isinstance(cached, Resolution):
        return cached
    result = _resolve(order, ctx, kb)
    ctx.memo[key] = result
    return result


def _resolve(order: dict[str, Any], ctx: OrderContext, kb: KnowledgeBase) -> Resolution:
    medication = medication_resource(order, ctx)
    concept = order.get("medicationCodeableConcept")
    if not isinstance(concept, dict):
        concept = medication.get("code") if medication else None
    label = concept_label(concept)
    drugs, how = _by_code(concept, ctx, kb)
    if drugs:
        return Resolution(tuple(drugs), how, label)
    if medication is not None:
        found: list[Drug] = []
        for item in medication.get("ingredient") or ():
            if isinstance(item, dict):
                found += _by_code(item.get("itemCodeableConcept"), ctx, kb)[0]
        if found:
            merged = kb.product(
                "medication:" + "+".join(sorted({i for d in found for i in d.ingredients})),
                label or " / ".join(d.name for d in found),
                {i for d in found for i in d.ingredients},
            )
            return Resolution((merged,), INGREDIENTS, label)
    texts = [label, *(str(c.get("display") or "") for c in codings(concept))]
    if isinstance(concept, dict) and concept.get("text"):
        texts.insert(0, str(concept["text"]))
    for text in texts:
        named = drug_from_name(text, kb) if text else None
        if named is not None:
            return Resolution((named,), NAME, label)
    problem, shown = _problem(concept, ctx)
    if not shown and medication is None and isinstance(order.get("medicationReference"), dict):
        ref = order["medicationReference"]
        label = label or str(ref.get("reference") or ref.get("display") or "")
        problem = UNREADABLE
    return Resolution((), "", label, problem, shown)


def describe(resolution: Resolution) -> str:
    """How to name an unresolved medication: its label and codes ("Mystery tablet (RxNorm 9)")."""
    shown = ", ".join(resolution.codes)
    if resolution.label and shown and resolution.label != shown:
        return f"{resolution.label} ({shown})"
    return resolution.label or shown or "the ordered medication (no code)"
