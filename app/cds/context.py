"""What a CDS evaluation looks at: one order plus the patient facts the caller gathered.

The context is pure data (FHIR JSON dicts), so the rules are pure functions and need no
store. The caller decides which other orders count (DESIGN §6): at create
(`order-select`) the patient's draft, active and on-hold orders; at activation
(`order-sign`) only active and on-hold ones. The order itself must not be in
`other_orders` (`others_of_type` drops it defensively when ids match, and also drops orders
that name a different patient). Allergies are passed unfiltered: the rules decide which
ones count.

Small helpers for reading FHIR JSON the rules share live here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import Drug

Hook = Literal["order-select", "order-sign"]
HOOKS: tuple[Hook, ...] = ("order-select", "order-sign")

COUNTING_STATUSES: dict[str, frozenset[str]] = {
    "order-select": frozenset({"draft", "active", "on-hold"}),
    "order-sign": frozenset({"active", "on-hold"}),
}
"""Statuses of the patient's other orders that count, per hook (DESIGN §6): at create the
draft, active and on-hold orders; at activation only active and on-hold ones."""


@dataclass(frozen=True)
class OrderContext:
    """One order and the patient facts the service layer gathered for it.

    Beyond the order, allergies and other orders: `patient` (for age checks), `medications`
    (Medication resources referenced by the orders, keyed `Medication/id`), `resolved_codes`
    (RxNorm codes the terminology service resolved: code -> Drug), `unresolved_codes` (code ->
    why a lookup failed, e.g. the service timed out) and `now` (look-back windows, age). The
    rules never do I/O: everything they read is here. `memo` caches per-evaluation work.
    """

    order: dict[str, Any]
    patient_id: str
    allergies: tuple[dict[str, Any], ...] = ()
    other_orders: tuple[dict[str, Any], ...] = ()
    hook: Hook = "order-select"
    patient: dict[str, Any] | None = None
    medications: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    resolved_codes: Mapping[str, Drug] = field(default_factory=dict)
    unresolved_codes: Mapping[str, str] = field(default_factory=dict)
    now: datetime | None = None
    memo: dict[int, object] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.hook not in HOOKS:
            raise ValueError(f"unknown hook {self.hook!r}")
        if not isinstance(self.order, dict) or "resourceType" not in self.order:
            raise ValueError("the order must be a FHIR resource (JSON object with resourceType)")
        # Callers may pass lists; store tuples so the context stays immutable.
        object.__setattr__(self, "allergies", tuple(self.allergies))
        object.__setattr__(self, "other_orders", tuple(self.other_orders))

    @property
    def order_type(self) -> str:
        return str(self.order.get("resourceType", ""))

    @property
    def order_ref(self) -> str | None:
        """`Type/id` of the order, or None when it has no id yet (order-select)."""
        return reference(self.order)

    def others_of_type(self, resource_type: str) -> Iterator[dict[str, Any]]:
        """The other orders of one resource type: never the order itself, nor an order that
        names a different patient."""
        own = self.order_ref
        for other in self.other_orders:
            if other.get("resourceType") != resource_type:
                continue
            if own is not None and reference(other) == own:
                continue
            if not refers_to_patient(other, self.patient_id):
                continue
            yield other


def reference(resource: dict[str, Any]) -> str | None:
    """`Type/id` for a resource with an id, else None."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not rtype or not rid:
        return None
    return f"{rtype}/{rid}"


def codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept (tolerating missing or malformed parts)."""
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code")]


def concept_label(concept: Any, fallback: str = "") -> str:
    """A human label for a CodeableConcept: text, else the first coding display/code."""
    if isinstance(concept, dict):
        if concept.get("text"):
            return str(concept["text"])
        for c in codings(concept):
            if c.get("display"):
                return str(c["display"])
        for c in codings(concept):
            return f"{c.get('system', '')}|{c['code']}".lstrip("|")
    return fallback


def medication_concept(order: dict[str, Any]) -> dict[str, Any] | None:
    """The code of the ordered medication as a CodeableConcept.

    `medicationCodeableConcept`, or for a `medicationReference` to a contained Medication
    (`#id`) that Medication's `code`. None when there is no code to read (absent, or a
    reference to a Medication outside the order).
    """
    concept = order.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept
    ref = order.get("medicationReference")
    if isinstance(ref, dict) and str(ref.get("reference") or "").startswith("#"):
        wanted = str(ref["reference"])[1:]
        for contained in order.get("contained") or ():
            if (
                isinstance(contained, dict)
                and contained.get("resourceType") == "Medication"
                and contained.get("id") == wanted
                and isinstance(contained.get("code"), dict)
            ):
                return dict(contained["code"])
    return None


def status_of(resource: dict[str, Any]) -> str:
    return str(resource.get("status") or "unknown")


def counts(resource: dict[str, Any], hook: Hook) -> bool:
    """Whether another order with this status counts for CDS at this hook."""
    return status_of(resource) in COUNTING_STATUSES[hook]


def refers_to_patient(resource: dict[str, Any], patient_id: str) -> bool:
    """False only when the resource names a DIFFERENT patient (absent reference: True)."""
    for key in ("patient", "subject"):
        ref = resource.get(key)
        if isinstance(ref, dict) and ref.get("reference"):
            parts = str(ref["reference"]).split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            return parts[-2:] == ["Patient", patient_id]
    return True


# ---------------------------------------------------------------- knowledge-base lookups
SYSTEM_LABELS = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
}


def system_label(system: str | None) -> str:
    """RxNorm / SNOMED CT / LOINC for their URIs, else the system as given."""
    return SYSTEM_LABELS.get(system or "", system or "code")


@dataclass(frozen=True)
class KnownDrug:
    """A coding of the order that the knowledge base knows, with what it says."""

    coding: dict[str, Any]
    drug: Drug


def known_drugs(order: dict[str, Any], kb: KnowledgeBase) -> list[KnownDrug]:
    """Every coding of the ordered medication the knowledge base knows (one per drug).

    Codes are authoritative: only `system` and `code` are looked up; displays and text play
    no part (the CODE_DISPLAY_MISMATCH rule looks at them separately).
    """
    found: list[KnownDrug] = []
    seen: set[str] = set()
    for coding in codings(medication_concept(order)):
        drug = kb.drug(str(coding.get("system") or ""), str(coding["code"]))
        if drug is not None and drug.rxcui not in seen:
            seen.add(drug.rxcui)
            found.append(KnownDrug(coding, drug))
    return found


def drug_label(known: list[KnownDrug]) -> str:
    """The knowledge base's name(s) of the ordered drug — never the order's display."""
    return " / ".join(k.drug.name for k in known)
