"""Pieces every legacy ↔ FHIR order mapping shares (DESIGN §1, §4, §5, §6).

* codings: a legacy `{system, code, display}` is a FHIR Coding. Well-known short system
  names (`rxnorm`, `LOINC`, `snomed`) are stored as the canonical URI, with the name the
  client sent kept in an extension on the Coding so it comes back unchanged.
* legacy extensions: a legacy field with no FHIR element of its own is kept in an extension
  `urn:orders-service:legacy:<field path>` (`labDetail.fastingRequired`, `orderType`), so
  nothing a client sent is lost.
* frequencies: in `app.legacy_api.mapping.frequency`.
* ids: legacy ↔ FHIR ids only through `app.domain.ids`.
* alerts (stored DetectedIssue → `cdsAlerts[]`) and history (versions + Provenance →
  `history[]`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain.clock import format_instant
from app.domain.ids import from_legacy, to_legacy
from app.domain.lifecycle import TRANSITIONS, Action, state_of
from app.errors import AppError
from app.services import alerts as alert_store

JSON = dict[str, Any]

LEGACY_EXT = "urn:orders-service:legacy:"
CLIENT_MUTATION_SYSTEM = "urn:orders-service:client-mutation-id"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SYSTEM_EXT = LEGACY_EXT + "system"

#: Short names clients use for code systems → the canonical URI stored in FHIR.
SYSTEM_ALIASES: dict[str, str] = {
    "rxnorm": RXNORM,
    "loinc": LOINC,
    "snomed": SNOMED,
    "snomedct": SNOMED,
    "snomed-ct": SNOMED,
    "snomed ct": SNOMED,
    "sct": SNOMED,
}


def now_instant(now: datetime | str) -> str:
    return now if isinstance(now, str) else format_instant(now)


# ---------------------------------------------------------------- codings
def canonical_system(system: str) -> str:
    return SYSTEM_ALIASES.get(system.strip().lower(), system)


def to_coding(code: Mapping[str, Any]) -> JSON:
    """Legacy `{system, code, display}` → FHIR Coding (system canonicalised, original kept)."""
    system = code.get("system")
    coding: JSON = {}
    if system is not None:
        canonical = canonical_system(str(system))
        if canonical != system:
            coding["extension"] = [{"url": SYSTEM_EXT, "valueString": system}]
        coding["system"] = canonical
    coding["code"] = code["code"]
    if code.get("display") is not None:
        coding["display"] = code["display"]
    return coding


def from_coding(coding: Mapping[str, Any]) -> JSON:
    """FHIR Coding → legacy `{system, code, display}` (the system as the client sent it)."""
    out: JSON = {}
    original = next(
        (e.get("valueString") for e in coding.get("extension", []) if e.get("url") == SYSTEM_EXT),
        None,
    )
    system = original if original is not None else coding.get("system")
    if system is not None:
        out["system"] = system
    if coding.get("code") is not None:
        out["code"] = coding["code"]
    if coding.get("display") is not None:
        out["display"] = coding["display"]
    return out


def to_concept(code: Mapping[str, Any], text: str | None = None) -> JSON:
    concept: JSON = {"coding": [to_coding(code)]}
    if text is not None:
        concept["text"] = text
    return concept


def first_coding(concept: Any) -> JSON | None:
    """The first coding of a CodeableConcept as a legacy code, or None."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("code"):
            return from_coding(coding)
    return None


def same_code(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("system", "code", "display"))


def text_of(concept: Any) -> str | None:
    """CodeableConcept.text, else the first coding's display or code."""
    if not isinstance(concept, dict):
        return None
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return None


# ---------------------------------------------------------------- legacy extensions
def legacy_ext(path: str, value: Any) -> JSON:
    """An extension keeping legacy field `path` (e.g. `labDetail.fastingRequired`)."""
    url = LEGACY_EXT + path
    if isinstance(value, bool):
        return {"url": url, "valueBoolean": value}
    if isinstance(value, int) and -(2**31) <= value < 2**31:
        return {"url": url, "valueInteger": value}
    if isinstance(value, int):  # FHIR integer is 32-bit
        return {"url": url, "valueDecimal": value}
    if isinstance(value, float):
        return {"url": url, "valueDecimal": value}
    if isinstance(value, Mapping):
        return {"url": url, "valueCoding": to_coding(value)}
    return {"url": url, "valueString": str(value)}


def ext_decode(ext: Mapping[str, Any]) -> Any:
    """The value of an extension written by `legacy_ext` (a Coding becomes a legacy code)."""
    if isinstance(ext.get("valueCoding"), dict):
        return from_coding(ext["valueCoding"])
    return next((v for k, v in ext.items() if k.startswith("value")), None)


def ext_values(resource: Mapping[str, Any], path: str) -> list[Any]:
    """Every value kept for legacy field `path`, in order."""
    url = LEGACY_EXT + path
    return [
        ext_decode(ext)
        for ext in resource.get("extension") or ()
        if isinstance(ext, dict) and ext.get("url") == url
    ]


def ext_value(resource: Mapping[str, Any], path: str) -> Any:
    found = ext_values(resource, path)
    return found[0] if found else None


def add_ext(resource: JSON, path: str, value: Any) -> None:
    resource.setdefault("extension", []).append(legacy_ext(path, value))


# ---------------------------------------------------------------- detail blocks
#: The detail block each legacy order type carries (`lab` is `laboratory`'s alias).
DETAIL_BLOCKS: dict[str, str] = {
    "medication": "medicationDetail",
    "diet": "dietDetail",
    "laboratory": "labDetail",
    "lab": "labDetail",
    "radiology": "radiologyDetail",
    "procedure": "procedureDetail",
    "referral": "referralDetail",
    "nursing": "nursingDetail",
    "activity": "activityDetail",
}


# ---------------------------------------------------------------- references
def reference(resource_type: str, legacy_id: str) -> JSON:
    return {"reference": f"{resource_type}/{from_legacy(legacy_id)}"}


def legacy_id_of(ref: Any, resource_type: str | None = None) -> str | None:
    """`{"reference": "Patient/pat-01J"}` → `pat_01J` (None if absent or another type)."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    parts = ref["reference"].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or (resource_type is not None and parts[-2] != resource_type):
        return None
    return to_legacy(parts[-1])


# ---------------------------------------------------------------- status
#: legacy status → the FHIR statuses that store it (any resource type).
FHIR_STATUSES: dict[str, tuple[str, ...]] = {
    "draft": ("draft",),
    "active": ("active",),
    "on-hold": ("on-hold",),
    "completed": ("completed",),
    "cancelled": ("revoked", "cancelled", "stopped"),
    "entered-in-error": ("entered-in-error",),
}


def legacy_status(fhir_status: str) -> str:
    """FHIR status → legacy state (`revoked`/`cancelled`/`stopped` → `cancelled`)."""
    try:
        return state_of(fhir_status).value
    except AppError:
        return fhir_status


# ---------------------------------------------------------------- alerts
def alert_to_legacy(issue: Mapping[str, Any]) -> JSON:
    """A stored DetectedIssue → a legacy `cdsAlerts[]` entry (DESIGN §5)."""
    view = alert_store.view(dict(issue))
    out: JSON = {
        "alertId": to_legacy(view.id),
        "level": view.level,
        "ruleId": view.rule_id,
        "message": view.message,
        "acknowledged": view.acknowledged,
    }
    if view.acknowledged:
        out["acknowledgedBy"] = view.acknowledged_by
        out["acknowledgedAt"] = view.acknowledged_at
        out["reason"] = view.reason
    if view.resolved:
        out["resolved"] = True
    return out


# ---------------------------------------------------------------- history
@dataclass(frozen=True)
class HistoryEntry:
    """One legacy `history[]` entry: `status` is the legacy state after this version."""

    version: int
    status: str
    action: str
    at: str | None
    by: str | None = None
    reason: str | None = None

    def to_json(self) -> JSON:
        return {
            "version": self.version,
            "status": self.status,
            "action": self.action,
            "at": self.at,
            "by": self.by,
            "reason": self.reason,
        }


_ACK_REASON = re.compile(r"^alert (?P<alert>\S+) acknowledged: (?P<reason>.*)$", re.DOTALL)
#: (legacy state before, legacy state after) → the lifecycle action between them.
_ACTION_OF: dict[tuple[str, str], str] = {
    (source.value, target.value): action.value for (source, action), target in TRANSITIONS.items()
}
#: Provenance reasons the workflow writes when the client gave none (not worth showing).
_DEFAULT_REASONS = frozenset(a.value for a in Action)


def _provenance_for(
    provenances: Iterable[Mapping[str, Any]], resource_type: str, rid: str
) -> dict[int, Mapping[str, Any]]:
    out: dict[int, Mapping[str, Any]] = {}
    for prov in provenances:
        for target in prov.get("target") or ():
            parts = str((target or {}).get("reference", "")).split("/")
            if (
                len(parts) >= 4
                and parts[-2] == "_history"
                and parts[-4:-2]
                == [
                    resource_type,
                    rid,
                ]
            ):
                try:
                    out.setdefault(int(parts[-1]), prov)
                except ValueError:
                    continue
    return out


def _agent(prov: Mapping[str, Any]) -> str | None:
    for agent in prov.get("agent") or ():
        who = (agent or {}).get("who") or {}
        name = who.get("display") or (who.get("identifier") or {}).get("value")
        if name:
            return str(name)
    return None


def history_entries(
    versions: Iterable[Mapping[str, Any]], provenances: Iterable[Mapping[str, Any]]
) -> list[HistoryEntry]:
    """The legacy history of an order, oldest first.

    `versions`: every stored version of the order (resource JSON with `meta.versionId`),
    in any order; `provenances`: the Provenance resources whose `target` names those
    versions (others are ignored). The action is `create` for the first version, the
    lifecycle action for a status change, `acknowledge` for an alert acknowledgement and
    `update` otherwise.
    """
    ordered = sorted(versions, key=lambda v: int((v.get("meta") or {}).get("versionId", 0)))
    if not ordered:
        return []
    rtype, rid = str(ordered[0].get("resourceType")), str(ordered[0].get("id"))
    by_version = _provenance_for(list(provenances), rtype, rid)
    entries: list[HistoryEntry] = []
    previous: str | None = None
    for v in ordered:
        number = int((v.get("meta") or {}).get("versionId", 0))
        status = legacy_status(str(v.get("status")))
        prov = by_version.get(number, {})
        reasons = [str(r.get("text")) for r in prov.get("reason") or () if r.get("text")]
        reason: str | None = reasons[0] if reasons else None
        if previous is None:
            action = "create" if number == 1 else "update"
        elif status != previous:
            action = _ACTION_OF.get((previous, status), "update")
        elif reason and (m := _ACK_REASON.match(reason)):
            action, reason = "acknowledge", m.group("reason")
        else:
            action = "update"
        if reason in _DEFAULT_REASONS:
            reason = None
        at = prov.get("recorded") or (v.get("meta") or {}).get("lastUpdated")
        entries.append(HistoryEntry(number, status, action, at, _agent(prov), reason))
        previous = status
    return entries
