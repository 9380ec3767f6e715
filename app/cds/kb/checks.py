"""Cross-checks of the validated knowledge documents, and assembly of the `KnowledgeBase`.

A schema cannot say that a referenced ingredient or class exists, that ids are unique, that
names are unambiguous or that a rule can fire at all; these checks do, and fail with the file,
the JSON path and the problem. Products, dosing and duplicate tables: `app.cds.kb.tables`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.cds.kb import tables
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import (
    RXNORM_SYSTEM,
    Allergen,
    CrossReactivity,
    Drug,
    DrugClass,
    Interaction,
    KnowledgeError,
    canonical_system,
    json_path,
    normalize,
    pair_fires,
)

Documents = Mapping[str, tuple[str, dict[str, Any]]]


class Builder:
    """Cross-checks the validated documents and assembles the indexed `KnowledgeBase`."""

    def __init__(
        self, documents: Documents, overlays: Sequence[tuple[str, dict[str, Any]]] = ()
    ) -> None:
        self.documents = documents
        self.overlays = overlays

    def fail(self, name: str, path: Sequence[str | int], problem: str) -> KnowledgeError:
        return KnowledgeError(self.documents[name][0], json_path(path), problem)

    def build(self) -> KnowledgeBase:
        raw_drugs = dict(self.documents["drugs"][1]["drugs"])
        self.check_drugs(raw_drugs)
        new_ingredients, products = tables.products(self.documents["products"], self.overlays)
        for code, name in new_ingredients.items():
            raw_drugs.setdefault(code, tables.imported_ingredient(code, name))
        tables.check_products(products, raw_drugs)
        classes, cross = self.check_classes(raw_drugs)
        ingredient_classes: dict[str, set[str]] = {}
        for drug_class in classes.values():
            for member in drug_class.members:
                ingredient_classes.setdefault(member, set()).add(drug_class.id)

        def classes_of(ingredients: Sequence[str]) -> frozenset[str]:
            return frozenset().union(*(ingredient_classes.get(i, set()) for i in ingredients))

        drugs = {
            code: Drug(
                rxcui=code,
                name=entry["name"],
                tty=entry["tty"],
                ingredients=frozenset(entry["ingredients"]),
                synonyms=tuple(entry["synonyms"]),
                classes=classes_of(entry["ingredients"]),
                verified=entry.get("verified", True),
            )
            for code, entry in raw_drugs.items()
        }
        for code, (entry, _label) in products.items():
            drugs[code] = Drug(
                rxcui=code,
                name=entry["name"],
                tty=entry["tty"],
                ingredients=frozenset(entry["ingredients"]),
                synonyms=tuple(entry.get("synonyms", [])),
                classes=classes_of(list(entry["ingredients"])),
                verified=entry.get("verified", True),
                strengths=dict(entry["ingredients"]),
                dose_form=entry.get("dose_form"),
            )
        rules, sides = self.check_rules(raw_drugs, classes)
        allergens, verified = self.check_allergy_codes(raw_drugs, classes)
        groups, windows = tables.duplicates(self.documents["duplicates"], classes)
        return KnowledgeBase(
            drugs=drugs,
            classes=classes,
            rules=rules,
            rule_sides=sides,
            cross_reactivity=cross,
            allergens=allergens,
            allergen_verified=verified,
            name_terms=self.name_terms(
                {**raw_drugs, **{code: entry for code, (entry, _) in products.items()}}
            ),
            versions={name: doc["version"] for name, (_, doc) in self.documents.items()},
            dosing=tables.dosing(self.documents["dosing"], raw_drugs, classes),
            therapy_groups=groups,
            lab_windows=windows,
        )

    # -- drugs.json
    def check_drugs(self, raw: Mapping[str, Any]) -> None:
        sources = self.documents["drugs"][1]["sources"]
        for code, entry in raw.items():
            here: tuple[str | int, ...] = ("drugs", code)
            if entry["source"] not in sources:
                raise self.fail(
                    "drugs",
                    (*here, "source"),
                    f"unknown source {entry['source']!r} (not a key of $.sources)",
                )
            ingredients = entry["ingredients"]
            if entry["tty"] == "IN":
                if ingredients != [code]:
                    raise self.fail(
                        "drugs",
                        (*here, "ingredients"),
                        f"an ingredient (tty IN) must list exactly itself: [{code!r}]",
                    )
                continue
            for index, ingredient in enumerate(ingredients):
                where = (*here, "ingredients", index)
                if ingredient not in raw:
                    raise self.fail("drugs", where, f"unknown ingredient {ingredient!r}")
                if raw[ingredient]["tty"] != "IN":
                    raise self.fail("drugs", where, f"{ingredient!r} is not an ingredient (tty IN)")

    def name_terms(self, raw: Mapping[str, Any]) -> dict[str, tuple[frozenset[str], str]]:
        """Normalized name -> (ingredients it names, name to report); ambiguity is an error."""
        terms: dict[str, tuple[frozenset[str], str]] = {}
        owners: dict[str, str] = {}
        for code, entry in raw.items():
            ingredients = frozenset(entry["ingredients"])
            names: list[tuple[tuple[str | int, ...], str]] = [
                (("drugs", code, "synonyms", i), s) for i, s in enumerate(entry.get("synonyms", []))
            ]
            if entry["tty"] == "IN":
                names.insert(0, (("drugs", code, "name"), entry["name"]))
            for where, text in names:
                term = normalize(text)
                if len(term) < 3:
                    raise self.fail("drugs", where, f"name {text!r} is too short to match safely")
                reported = entry["name"] if entry["tty"] == "IN" else text
                known = terms.get(term)
                if known is not None and known[0] != ingredients and entry["source"] == "import":
                    continue  # an imported name never overrides the curated one
                if known is not None and known[0] != ingredients:
                    raise self.fail(
                        "drugs",
                        where,
                        f"name {text!r} already names a different drug ({owners[term]})",
                    )
                terms.setdefault(term, (ingredients, reported))
                owners.setdefault(term, code)
        return terms

    # -- classes.json
    def check_classes(
        self, raw_drugs: Mapping[str, Any]
    ) -> tuple[dict[str, DrugClass], list[CrossReactivity]]:
        document = self.documents["classes"][1]
        classes: dict[str, DrugClass] = {}
        for index, entry in enumerate(document["classes"]):
            here: tuple[str | int, ...] = ("classes", index)
            if entry["id"] in classes:
                raise self.fail("classes", (*here, "id"), f"duplicate class id {entry['id']!r}")
            for position, member in enumerate(entry["members"]):
                self.require_ingredient("classes", (*here, "members", position), member, raw_drugs)
            classes[entry["id"]] = DrugClass(
                id=entry["id"],
                name=entry["name"],
                members=frozenset(entry["members"]),
                source=entry["source"],
                note=entry.get("note"),
                terms=tuple(entry.get("terms", [])),
            )
        cross: list[CrossReactivity] = []
        seen: set[tuple[str, str]] = set()
        for index, entry in enumerate(document["cross_reactivity"]):
            here = ("cross_reactivity", index)
            for key in ("from_class", "to_class"):
                if entry[key] not in classes:
                    raise self.fail("classes", (*here, key), f"unknown class {entry[key]!r}")
            pair = (entry["from_class"], entry["to_class"])
            if pair[0] == pair[1]:
                raise self.fail(
                    "classes", (*here, "to_class"), "a class cannot cross-react with itself"
                )
            if pair in seen:
                raise self.fail(
                    "classes", here, f"duplicate cross-reactivity {pair[0]} -> {pair[1]}"
                )
            seen.add(pair)
            cross.append(CrossReactivity(pair[0], pair[1], entry["note"], entry["source"]))
        return classes, cross

    def require_ingredient(
        self, name: str, where: Sequence[str | int], code: str, raw_drugs: Mapping[str, Any]
    ) -> None:
        if code not in raw_drugs:
            raise self.fail(name, where, f"unknown ingredient {code!r} (not in drugs.json)")
        if raw_drugs[code]["tty"] != "IN":
            raise self.fail(name, where, f"{code!r} is not an ingredient (tty IN) in drugs.json")

    # -- interactions.json
    def check_rules(
        self, raw_drugs: Mapping[str, Any], classes: Mapping[str, DrugClass]
    ) -> tuple[list[Interaction], dict[str, tuple[frozenset[str], frozenset[str]]]]:
        raw_rules = self.documents["interactions"][1]["rules"]
        ids = [rule["id"] for rule in raw_rules]
        rules: list[Interaction] = []
        sides: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        onc_rows: dict[int, str] = {}
        for index, entry in enumerate(raw_rules):
            here: tuple[str | int, ...] = ("rules", index)
            if entry["id"] in sides:
                raise self.fail("interactions", (*here, "id"), f"duplicate rule id {entry['id']!r}")
            expanded = []
            for side in ("a", "b"):
                members: set[str] = set()
                for position, code in enumerate(entry[side].get("ingredients", [])):
                    where = (*here, side, "ingredients", position)
                    self.require_ingredient("interactions", where, code, raw_drugs)
                    members.add(code)
                for position, class_id in enumerate(entry[side].get("classes", [])):
                    if class_id not in classes:
                        raise self.fail(
                            "interactions",
                            (*here, side, "classes", position),
                            f"unknown class {class_id!r} (not in classes.json)",
                        )
                    members |= classes[class_id].members
                expanded.append(frozenset(members))
            if not pair_fires(expanded[0], expanded[1]):
                raise self.fail(
                    "interactions",
                    here,
                    "the rule can never fire: no pair of different ingredients",
                )
            onc = entry["onc_high_priority"]
            if onc and entry["severity"] != "contraindicated":
                raise self.fail(
                    "interactions",
                    (*here, "severity"),
                    "an ONC high-priority rule must be 'contraindicated' (Phansalkar 2012)",
                )
            row = entry.get("onc_row")
            if row is not None:
                if row in onc_rows:
                    raise self.fail(
                        "interactions",
                        (*here, "onc_row"),
                        f"ONC row {row} is already rule {onc_rows[row]!r}",
                    )
                onc_rows[row] = entry["id"]
            for position, other in enumerate(entry.get("supersedes", [])):
                if other not in ids or other == entry["id"]:
                    problem = (
                        "a rule cannot supersede itself"
                        if other == entry["id"]
                        else f"unknown rule id {other!r}"
                    )
                    raise self.fail("interactions", (*here, "supersedes", position), problem)
            sides[entry["id"]] = (expanded[0], expanded[1])
            rules.append(
                Interaction(
                    id=entry["id"],
                    severity=entry["severity"],
                    onc_high_priority=onc,
                    message=entry["message"],
                    source=entry["source"],
                    a_ingredients=frozenset(entry["a"].get("ingredients", [])),
                    a_classes=frozenset(entry["a"].get("classes", [])),
                    b_ingredients=frozenset(entry["b"].get("ingredients", [])),
                    b_classes=frozenset(entry["b"].get("classes", [])),
                    supersedes=tuple(entry.get("supersedes", [])),
                    onc_row=row,
                )
            )
        return rules, sides

    # -- allergy_codes.json
    def check_allergy_codes(
        self, raw_drugs: Mapping[str, Any], classes: Mapping[str, DrugClass]
    ) -> tuple[dict[tuple[str, str], Allergen], dict[tuple[str, str], bool]]:
        document = self.documents["allergy_codes"][1]
        sources = document["sources"]
        allergens: dict[tuple[str, str], Allergen] = {}
        verified: dict[tuple[str, str], bool] = {}
        for system, codes in document["systems"].items():
            canonical = canonical_system(system)
            for code, entry in codes.items():
                here: tuple[str | int, ...] = ("systems", system, code)
                if canonical == RXNORM_SYSTEM:
                    # An RxNorm entry may only widen the code to classes: its ingredients must
                    # stay those of drugs.json, so the two files cannot disagree on what it is.
                    if system != RXNORM_SYSTEM:
                        raise self.fail(
                            "allergy_codes", ("systems", system), f"write RxNorm as {RXNORM_SYSTEM}"
                        )
                    known = raw_drugs.get(code)
                    if known is None:
                        raise self.fail(
                            "allergy_codes", here, f"RxNorm {code} is not in drugs.json"
                        )
                    if sorted(entry.get("ingredients", [])) != sorted(known["ingredients"]):
                        raise self.fail(
                            "allergy_codes",
                            (*here, "ingredients"),
                            f"must equal the ingredients of RxNorm {code} in drugs.json "
                            f"({known['ingredients']})",
                        )
                if entry["source"] not in sources:
                    raise self.fail(
                        "allergy_codes",
                        (*here, "source"),
                        f"unknown source {entry['source']!r} (not a key of $.sources)",
                    )
                for position, ingredient in enumerate(entry.get("ingredients", [])):
                    self.require_ingredient(
                        "allergy_codes", (*here, "ingredients", position), ingredient, raw_drugs
                    )
                for position, class_id in enumerate(entry.get("classes", [])):
                    if class_id not in classes:
                        raise self.fail(
                            "allergy_codes",
                            (*here, "classes", position),
                            f"unknown class {class_id!r} (not in classes.json)",
                        )
                key = (canonical, code)
                allergens[key] = Allergen(
                    ingredients=frozenset(entry.get("ingredients", [])),
                    classes=frozenset(entry.get("classes", [])),
                    label=entry["label"],
                )
                verified[key] = entry.get("verified", True)
        return allergens, verified
