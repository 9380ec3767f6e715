"""Pull search values out of a resource's JSON, in the same transaction as the write.

Paths are dotted (`name.given`); lists are flattened at each step. The value's shape tells
its FHIR type: a CodeableConcept has `coding`, an Identifier `value`, a Coding `code`,
a Reference `reference`, a Period `start`/`end`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.clock import parse_range
from app.domain.order_types import plan_order_types
from app.store.search.definitions import ResourceSearch
from app.store.tables import NO_DATE

MAX_LEN = 255
#: Derived parameters (`"derived": name` in search_parameters.json): resource → codes.
DERIVED: dict[str, Callable[[dict[str, Any]], Iterable[str]]] = {
    "plan-order-types": plan_order_types,
}


@dataclass
class IndexValues:
    tokens: set[tuple[str, str, str]] = field(default_factory=set)  # (param, system, code)
    references: set[tuple[str, str, str]] = field(default_factory=set)  # (param, type, id)
    dates: set[tuple[str, datetime, datetime]] = field(default_factory=set)
    strings: set[tuple[str, str, str]] = field(default_factory=set)  # (param, norm, exact)
    patient_id: str | None = None
    status: str | None = None
    sort_date: datetime = NO_DATE


def walk(node: Any, path: str) -> Iterator[Any]:
    """Yield every value at a dotted path, flattening lists."""
    current = [node]
    for step in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                value = item[step]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    yield from current


def parse_reference(reference: str) -> tuple[str, str] | None:
    """`Patient/1`, `Patient/1/_history/2` or `https://x/fhir/R4/Patient/1` → (type, id)."""
    if not reference or reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return parts[-2], parts[-1]


def normalize_string(value: str) -> str:
    """Case- and accent-insensitive form used by the default string search."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()[:MAX_LEN]


def _tokens(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield "", value
    elif isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code"):
                    yield coding.get("system") or "", str(coding["code"])
        elif "code" in value and isinstance(value["code"], str):
            yield value.get("system") or "", value["code"]
        elif "value" in value and isinstance(value["value"], str):
            yield value.get("system") or "", value["value"]


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    try:
        if isinstance(value, str):
            yield parse_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):
            low = parse_range(value["start"])[0] if value.get("start") else NO_DATE
            high = (
                parse_range(value["end"])[1]
                if value.get("end")
                else datetime.max.replace(tzinfo=NO_DATE.tzinfo)
            )
            yield low, high
    except ValueError:
        return  # validated resources never get here; a bad value is simply not indexed


def extract(
    definition: ResourceSearch,
    resource: dict[str, Any],
    *,
    patient_id: str | None = None,
) -> IndexValues:
    """Index values for one resource; `patient_id` is given by the writer for Provenance."""
    out = IndexValues()
    for param in definition.params.values():
        if param.column == "status":
            continue  # searched on resources.status; no index rows needed
        if param.derived is not None:
            for code in DERIVED[param.derived](resource):
                out.tokens.add((param.name, "", code[:MAX_LEN]))
            continue
        for path in param.paths:
            if path.startswith("_"):
                continue
            for value in walk(resource, path):
                _add(out, param.name, param.type, param.target, value)
    out.patient_id = compartment_patient(definition, resource, patient_id=patient_id)
    if definition.compartment == "_target" and patient_id:
        out.references.add(("patient", "Patient", patient_id))
    status = resource.get("status")
    out.status = status if isinstance(status, str) else None
    if definition.sort:
        lows = [low for (p, low, _h) in out.dates if p == definition.sort]
        out.sort_date = min(lows) if lows else NO_DATE
    return out


def compartment_patient(
    definition: ResourceSearch, resource: dict[str, Any], *, patient_id: str | None = None
) -> str | None:
    """The patient whose compartment this resource (any version of it) belongs to:
    the Patient itself, the patient its compartment element references, or (Provenance)
    the one its writer gives."""
    compartment = definition.compartment
    if compartment == "_self":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    if compartment == "_target":
        return patient_id
    if compartment:
        for value in walk(resource, compartment):
            ref = parse_reference(value.get("reference", "")) if isinstance(value, dict) else None
            if ref and ref[0] == "Patient":
                return ref[1]
    return None


def _add(out: IndexValues, name: str, ptype: str, target: tuple[str, ...], value: Any) -> None:
    if ptype == "token":
        for system, code in _tokens(value):
            out.tokens.add((name, system[:MAX_LEN], code[:MAX_LEN]))
    elif ptype == "reference":
        ref = parse_reference(value.get("reference", "")) if isinstance(value, dict) else None
        if isinstance(value, str):
            ref = parse_reference(value)
        if ref and (not target or ref[0] in target):
            out.references.add((name, ref[0], ref[1]))
    elif ptype == "date":
        for low, high in _dates(value):
            out.dates.add((name, low, high))
    elif ptype == "string" and isinstance(value, str):
        out.strings.add((name, normalize_string(value), value[:MAX_LEN]))
