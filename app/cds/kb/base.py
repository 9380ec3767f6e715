"""The indexed, immutable view of the knowledge files. Build it with `load_knowledge()`.

Matching model (DESIGN §6: codes are authoritative, displays are not):
* a drug is an RxNorm concept; products map to ingredient RxCUIs and a drug's classes are the
  classes of its ingredients;
* an interaction rule fires for two drugs when one has an ingredient on side `a` and the other
  a *different* ingredient on side `b` (either way round) — a drug never "interacts" with its
  own ingredient, that is a duplicate order;
* an allergy code resolves to ingredients (ingredient-level allergy) or classes (class-level
  allergy); class-to-class cross-reactivity is separate data.

Names are a fallback only (`ingredient_named`, `names_in`, `classes_named_in`): rules that use
them say so in the alert ("matched by name").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from app.cds.kb.model import (
    PRODUCT_TTYS,
    Allergen,
    CrossReactivity,
    Dosing,
    Drug,
    DrugClass,
    Interaction,
    LabWindows,
    TherapyGroup,
    canonical_system,
    is_rxnorm,
    normalize,
    pair_fires,
)


def _alternation(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern, longest term first, bounded by non-letters: "amoxicillin500mg" still names
    amoxicillin, "cipro" does not match inside "ciprofloxacin"."""
    ordered = sorted(set(terms), key=lambda t: (-len(t), t))
    if not ordered:
        return None
    return re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(t) for t in ordered) + r")(?![a-z])")


class KnowledgeBase:
    """All lookups are dictionary hits or small set operations; indexes are built once."""

    def __init__(
        self,
        *,
        drugs: Mapping[str, Drug],
        classes: Mapping[str, DrugClass],
        rules: Sequence[Interaction],
        rule_sides: Mapping[str, tuple[frozenset[str], frozenset[str]]],
        cross_reactivity: Sequence[CrossReactivity],
        allergens: Mapping[tuple[str, str], Allergen],
        allergen_verified: Mapping[tuple[str, str], bool],
        name_terms: Mapping[str, tuple[frozenset[str], str]],
        versions: Mapping[str, str],
        dosing: Dosing | None = None,
        therapy_groups: Sequence[TherapyGroup] = (),
        lab_windows: LabWindows | None = None,
    ) -> None:
        self._drugs = dict(drugs)
        self._classes = dict(classes)
        self.rules: tuple[Interaction, ...] = tuple(rules)
        self._rule_sides = dict(rule_sides)
        self.cross_reactivity: tuple[CrossReactivity, ...] = tuple(cross_reactivity)
        self._allergens = dict(allergens)
        self._allergen_verified = dict(allergen_verified)
        self._name_terms = dict(name_terms)
        self.versions: dict[str, str] = dict(versions)
        self.dosing = dosing or Dosing()
        self.therapy_groups: tuple[TherapyGroup, ...] = tuple(therapy_groups)
        self.lab_windows = lab_windows or LabWindows(24, "default")

        by_ingredient: dict[str, set[str]] = {}
        for drug_class in self._classes.values():
            for member in drug_class.members:
                by_ingredient.setdefault(member, set()).add(drug_class.id)
        self._ingredient_classes = {k: frozenset(v) for k, v in by_ingredient.items()}

        rules_by_ingredient: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            side_a, side_b = self._rule_sides[rule.id]
            for ingredient in side_a | side_b:
                rules_by_ingredient.setdefault(ingredient, []).append(index)
        self._rules_by_ingredient = {k: tuple(v) for k, v in rules_by_ingredient.items()}
        self._name_pattern = _alternation(self._name_terms)

        # Exact ingredient names (and their synonyms) for the name fallback.
        self._ingredient_names: dict[str, str] = {}
        for drug in self._drugs.values():
            if drug.tty == "IN":
                for text in (drug.name, *drug.synonyms):
                    self._ingredient_names.setdefault(normalize(text), drug.rxcui)
        self._class_terms: dict[str, str] = {
            normalize(term): c.id for c in self._classes.values() for term in c.terms
        }
        self._class_pattern = _alternation(self._class_terms)

    # ------------------------------------------------------------------ drugs and classes
    def drug(self, system: str | None, code: str) -> Drug | None:
        """The drug an RxNorm coding names, or None (unknown code or not an RxNorm coding)."""
        if not is_rxnorm(system):
            return None
        return self._drugs.get(code.strip())

    def drug_class(self, class_id: str) -> DrugClass | None:
        """A class by id, for its name and citation when explaining an alert."""
        return self._classes.get(class_id)

    @property
    def drugs(self) -> Mapping[str, Drug]:
        """Every known drug by RxCUI (a read-only view: coverage notes, tests)."""
        return MappingProxyType(self._drugs)

    @property
    def classes(self) -> Mapping[str, DrugClass]:
        """Every class by id (a read-only view)."""
        return MappingProxyType(self._classes)

    def classes_of(self, ingredient: str) -> frozenset[str]:
        """Ids of the classes an ingredient RxCUI belongs to (empty when none or unknown)."""
        return self._ingredient_classes.get(ingredient, frozenset())

    def ingredient_name(self, rxcui: str) -> str:
        found = self._drugs.get(rxcui)
        return found.name if found else f"RxNorm {rxcui}"

    def product(
        self, rxcui: str, name: str, ingredients: Iterable[str], *, tty: str = "SCD"
    ) -> Drug:
        """A drug the knowledge base does not list (terminology service, name fallback), with
        the classes its ingredients have here."""
        members = frozenset(ingredients)
        classes: frozenset[str] = frozenset().union(*(self.classes_of(i) for i in members))
        return Drug(rxcui, name, tty, members, (), classes, verified=False)

    # ------------------------------------------------------------------ names (fallback)
    def ingredient_named(self, text: str) -> Drug | None:
        """The ingredient whose name (or synonym) is exactly `text`, ignoring case and
        punctuation; None otherwise."""
        rxcui = self._ingredient_names.get(normalize(text))
        return self._drugs.get(rxcui) if rxcui else None

    def names_in(self, text: str) -> list[tuple[frozenset[str], str]]:
        """Every known drug name in free text: (its ingredients, the name to report)."""
        if not text or self._name_pattern is None:
            return []
        return [self._name_terms[m.group(0)] for m in self._name_pattern.finditer(normalize(text))]

    def classes_named_in(self, text: str) -> frozenset[str]:
        """Class ids a free text names ("Penicillins", "sulfa drugs", "NSAID")."""
        if not text or self._class_pattern is None:
            return frozenset()
        found = self._class_pattern.finditer(normalize(text))
        return frozenset(self._class_terms[m.group(0)] for m in found)

    # ------------------------------------------------------------------ interactions
    def rule_ingredients(self, rule: Interaction) -> tuple[frozenset[str], frozenset[str]]:
        """Both sides of a rule expanded to ingredient RxCUIs (classes resolved)."""
        return self._rule_sides[rule.id]

    def interactions(self, drug_a: Drug, drug_b: Drug) -> list[Interaction]:
        """Rules that fire for the pair, in file order, each once, superseded ones dropped.

        Symmetric: `interactions(a, b)` and `interactions(b, a)` return the same rules.
        """
        ingredients_a, ingredients_b = drug_a.ingredients, drug_b.ingredients
        candidates: set[int] = set()
        for ingredient in ingredients_a | ingredients_b:
            candidates.update(self._rules_by_ingredient.get(ingredient, ()))
        fired: list[Interaction] = []
        for index in sorted(candidates):
            rule = self.rules[index]
            side_a, side_b = self._rule_sides[rule.id]
            if pair_fires(ingredients_a & side_a, ingredients_b & side_b) or pair_fires(
                ingredients_a & side_b, ingredients_b & side_a
            ):
                fired.append(rule)
        superseded = {rule_id for rule in fired for rule_id in rule.supersedes}
        return [rule for rule in fired if rule.id not in superseded]

    # ------------------------------------------------------------------ allergies
    def allergen(self, system: str | None, code: str) -> Allergen | None:
        """What an allergy coding is to, or None when the code is unknown.

        allergy_codes.json decides first: SNOMED CT substances and findings, and the few RxNorm
        codes that records use to mean a whole class (RxNorm 7980 penicillin G is how the seed,
        and many records, write "penicillin allergy"). Any other RxNorm code (ingredient or
        product) resolves through the drug table at ingredient level.
        """
        code = code.strip()
        listed = self._allergens.get((canonical_system(system), code))
        if listed is not None or not is_rxnorm(system):
            return listed
        drug = self._drugs.get(code)
        if drug is None:
            return None
        return Allergen(ingredients=drug.ingredients, classes=frozenset(), label=drug.name)

    def cross_reactions(
        self, allergen_classes: Iterable[str], drug_classes: Iterable[str]
    ) -> list[CrossReactivity]:
        """Cross-reactivity entries from any allergen class to any of the drug's classes."""
        allergic = frozenset(allergen_classes)
        ordered = frozenset(drug_classes)
        return [
            entry
            for entry in self.cross_reactivity
            if entry.from_class in allergic and entry.to_class in ordered
        ]

    # ------------------------------------------------------------------ code/display check
    def display_names_other_drug(self, drug: Drug, display: str) -> str | None:
        """The name of another known drug that `display` names, or None.

        A name whose ingredients are all among this drug's ingredients is this drug's own name
        ("Oxycodone ER 10 mg" on 1049502); a display naming no known drug is not a mismatch.
        """
        for ingredients, name in self.names_in(display):
            if not ingredients <= drug.ingredients:
                return name
        return None

    # ------------------------------------------------------------------ reporting
    def coverage(self) -> dict[str, Any]:
        """Counts and the unverified codes, for the coverage note and start-up logging."""
        ingredients = [d for d in self._drugs.values() if d.tty == "IN"]
        products = [d for d in self._drugs.values() if d.tty in PRODUCT_TTYS]
        with_products = {i for d in products for i in d.ingredients}
        return {
            "drugs": len(self._drugs),
            "ingredients": len(ingredients),
            "products": len(products),
            "ingredients_with_products": len(with_products & {d.rxcui for d in ingredients}),
            "classes": len(self._classes),
            "rules": len(self.rules),
            "onc_high_priority_rules": sum(1 for r in self.rules if r.onc_high_priority),
            "cross_reactivity": len(self.cross_reactivity),
            "allergy_codes": len(self._allergens),
            "therapy_groups": len(self.therapy_groups),
            "max_daily_doses": len(self.dosing.max_daily),
            "age_rules": len(self.dosing.age_rules),
            "lab_windows": len(self.lab_windows.hours),
            "unverified_drug_codes": sorted(
                (d.rxcui for d in self._drugs.values() if not d.verified), key=int
            ),
            "unverified_allergy_codes": sorted(
                code for (_, code), ok in self._allergen_verified.items() if not ok
            ),
        }
