"""The one way to build what decision support looks at (`OrderContext`), for every path:
order create (order-select), activation (order-sign) and CDS Hooks calls.

What it loads, per order type (only what that type's rules read):
- MedicationRequest: the patient, the allergies and the open MedicationRequests (allergy,
  interaction, duplicate, dose and age rules compare the drug with all of them);
- ServiceRequest: open ServiceRequests sharing one of its codes, plus completed ones for the
  lab look-back window — an indexed lookup instead of every order;
- NutritionOrder: open NutritionOrders.
"Open" is per hook: draft/active/on-hold at order-select, active/on-hold at order-sign.

Then, for medications: Medication resources referenced by the orders (`medicationReference`
outside the order) are read from the store, and RxNorm codes the knowledge base does not know
(orders and allergies) go to the terminology service when one is configured; its answers and
its failures ("did not answer within 0.5 s") go into the context for the rules.

A CDS Hooks client may supply some of this (prefetch): `Supplied` fields that are not None are
used as given, the rest is read from the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.cds.context import Hook, OrderContext, codings, medication_concept
from app.cds.engine import CdsEngine
from app.cds.kb.model import is_rxnorm
from app.cds.lookup import Found
from app.cds.resolve import local_reference
from app.domain.clock import utcnow
from app.services.unit_of_work import UnitOfWork

COUNTS_AT_CREATE = ("draft", "active", "on-hold")
COUNTS_AT_SIGN = ("active", "on-hold")
LOOK_BACK = ("completed",)
"""Completed ServiceRequests are read too, for the per-LOINC look-back window."""


@dataclass(frozen=True)
class Supplied:
    """What the caller already has (CDS Hooks prefetch); None = read it from the store."""

    patient: dict[str, Any] | None = None
    allergies: list[dict[str, Any]] | None = None
    orders: list[dict[str, Any]] | None = None
    #: Medication resources sent beside the orders (a CDS Hooks draftOrders Bundle), by id.
    medications: dict[str, dict[str, Any]] | None = None


def statuses_for(hook: Hook) -> tuple[str, ...]:
    return COUNTS_AT_CREATE if hook == "order-select" else COUNTS_AT_SIGN


class ContextBuilder:
    def __init__(self, uow: UnitOfWork, engine: CdsEngine) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.engine = engine

    def build(
        self,
        order: dict[str, Any],
        patient_id: str,
        hook: Hook,
        *,
        supplied: Supplied | None = None,
    ) -> OrderContext:
        supplied = supplied or Supplied()
        rtype = order["resourceType"]
        medication = rtype == "MedicationRequest"
        allergies: list[dict[str, Any]] = []
        patient: dict[str, Any] | None = None
        if medication:
            allergies = (
                supplied.allergies
                if supplied.allergies is not None
                else [r.content for r in self.repo.of_patient("AllergyIntolerance", patient_id)]
            )
            patient = supplied.patient
            if patient is None:
                found = self.repo.read("Patient", patient_id)
                patient = found.content if found is not None else None
        if supplied.orders is not None:
            others = [o for o in supplied.orders if o.get("resourceType") == rtype]
        else:
            others = self._other_orders(order, patient_id, hook)
        own_id = order.get("id")
        others = [o for o in others if o is not order and not (own_id and o.get("id") == own_id)]
        context = OrderContext(
            order=order,
            patient_id=patient_id,
            allergies=tuple(allergies),
            other_orders=tuple(others),
            hook=hook,
            patient=patient,
            now=utcnow(),
        )
        if not medication:
            return context
        orders = [order, *others]
        medications = self._medications(orders, supplied.medications or {})
        resolved, unresolved = self._terminology(orders, medications.values(), allergies)
        return OrderContext(
            order=order,
            patient_id=patient_id,
            allergies=context.allergies,
            other_orders=context.other_orders,
            hook=hook,
            patient=patient,
            medications=medications,
            resolved_codes=resolved,
            unresolved_codes=unresolved,
            now=context.now,
        )

    def _other_orders(
        self, order: dict[str, Any], patient_id: str, hook: Hook
    ) -> list[dict[str, Any]]:
        rtype = order["resourceType"]
        statuses = statuses_for(hook)
        codes = code_filter(order.get("code")) if rtype == "ServiceRequest" else None
        if codes == []:  # no code: nothing to compare, nothing to load
            return []
        if rtype == "ServiceRequest":
            statuses = (*statuses, *LOOK_BACK)
        found = self.repo.of_patient(rtype, patient_id, statuses=statuses, codes=codes)
        return [r.content for r in found if r.id != order.get("id")]

    def _medications(
        self, orders: Iterable[dict[str, Any]], supplied: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Medication resources the orders reference outside themselves, by `Medication/id`:
        those the caller supplied, else the tenant's stored ones, read in one statement for
        all the orders. An absolute URL is another server's Medication, never looked up here
        under the same id (it may be another drug): unless supplied, it stays unread, and
        DRUG-UNKNOWN says so."""
        found_here: dict[str, dict[str, Any]] = {}
        wanted: dict[str, tuple[str, str]] = {}
        for item in orders:
            ref = item.get("medicationReference")
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target and not target.startswith("#"):
                local = local_reference(target)
                rtype, _, rid = local.partition("/")
                if rtype == "Medication" and rid and local in supplied:
                    found_here[local] = supplied[local]
                elif rtype == "Medication" and rid and "://" not in target:
                    wanted[local] = (rtype, rid)
        if wanted:
            for r in self.repo.fetch_many(list(wanted.values())):
                found_here[f"Medication/{r.id}"] = r.content
        return found_here

    def _terminology(
        self,
        orders: list[dict[str, Any]],
        medications: Iterable[dict[str, Any]],
        allergies: list[dict[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Ask the terminology service about the RxNorm codes the knowledge base lacks."""
        lookup = self.engine.lookup
        if lookup is None:
            return {}, {}
        kb = self.engine.kb
        concepts: list[Any] = [medication_concept(o) for o in orders]
        for med in medications:
            concepts.append(med.get("code"))
            concepts += [i.get("itemCodeableConcept") for i in med.get("ingredient") or ()]
        for allergy in allergies:
            concepts.append(allergy.get("code"))
        unknown = [
            str(c["code"])
            for concept in concepts
            for c in codings(concept)
            if is_rxnorm(str(c.get("system") or ""))
            and kb.drug(None, str(c["code"])) is None
            and str(c["code"]).isdigit()
        ]
        if not unknown:
            return {}, {}
        resolved: dict[str, Any] = {}
        unresolved: dict[str, str] = {}
        for code, answer in lookup.ingredients(unknown).items():
            if isinstance(answer, Found):
                if answer.ingredients:
                    names = " / ".join(name for _rxcui, name in answer.ingredients)
                    resolved[code] = kb.product(
                        code, names, (rxcui for rxcui, _name in answer.ingredients)
                    )
                else:
                    unresolved[code] = "unknown to the terminology service"
            else:
                unresolved[code] = answer.reason
        return resolved, unresolved


def code_filter(concept: Any) -> list[tuple[str, str]] | None:
    """(system, code) of every coding of the concept ([] when it has none; system "" for a
    coding without one, which matches the code in any system, a superset the rule
    narrows), or None when a code is longer than the index keeps (255 characters): then
    all open orders are loaded and the rule compares them itself."""
    if not isinstance(concept, dict):
        return []
    values: list[tuple[str, str]] = []
    for coding in concept.get("coding") or ():
        if not isinstance(coding, dict) or not coding.get("code"):
            continue
        system, code = str(coding.get("system") or ""), str(coding["code"])
        if len(system) > 255 or len(code) > 255:
            return None
        values.append((system, code))
    return values
