"""Laboratory, radiology, procedure, referral, nursing and activity orders ↔ ServiceRequest.

`category` tells the type (`app.domain.order_types`); `code` is the `orderCode`. Detail
fields go to the R4 element that means the same thing; the rest to legacy extensions
(`urn:orders-service:legacy:<block>.<field>`):

| legacy | ServiceRequest |
|---|---|
| `labDetail.priority` | `priority` (its own extension only when the top-level `priority` differs) |
| `referralDetail.urgency` | `priority` (a different top-level `priority` goes to an extension) |
| `labDetail.collectionDateTime`, `procedureDetail.scheduledDateTime` | `occurrenceDateTime` |
| `labDetail.specimenType`, `labDetail.fastingRequired` | extensions |
| `radiologyDetail.modality` | `orderDetail[0]` (text, + DICOM modality code when known) |
| `radiologyDetail.bodySite`, `procedureDetail.bodySite` | `bodySite[0].text` |
| `radiologyDetail.contrast` | extension (boolean) |
| `radiologyDetail.clinicalIndication`, `referralDetail.clinicalSummary` | `reasonCode[0].text` |
| `referralDetail.referralType` | extension |
| `referralDetail.referToFacilityId` | `performer[0]` = `Organization/<fhir id>` |
| `referralDetail.referToSpecialty` | `performerType.text` |
| `referralDetail.referralStatus` (read-only) | the referral Task's `businessStatus` |
| `referralDetail.scheduledAppointmentId` (read-only) | an Appointment in the Task's `output` |
| `nursingDetail.instructions` | `orderDetail[0].text` |
| `nursingDetail.frequency` | `occurrenceTiming` (+ `asNeededBoolean` for PRN) |
| `activityDetail.activityType` | `orderDetail[0].text` |
| `activityDetail.instructions` | `patientInstruction` |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.domain.order_types import REFERRAL_STATUS_SYSTEM, OrderType
from app.legacy_api.mapping.common import (
    JSON,
    add_ext,
    ext_value,
    legacy_id_of,
    reference,
    text_of,
    to_concept,
)
from app.legacy_api.mapping.frequency import frequency_of, parse_frequency

DICOM = "http://dicom.nema.org/resources/ontology/DCM"
#: Legacy modality (lower case) → DICOM modality code and display (DICOM PS3.16 CID 29).
MODALITIES: dict[str, tuple[str, str]] = {}
for _names, _code, _display in (
    (("ct",), "CT", "Computed Tomography"),
    (("mr", "mri"), "MR", "Magnetic Resonance"),
    (("us", "ultrasound"), "US", "Ultrasound"),
    (("nm", "nuclear medicine"), "NM", "Nuclear Medicine"),
    (("pt", "pet"), "PT", "Positron emission tomography"),
    (("mg", "mammography"), "MG", "Mammography"),
    (("dx",), "DX", "Digital Radiography"),
    (("cr",), "CR", "Computed Radiography"),
    (("xa",), "XA", "X-Ray Angiography"),
    (("rf", "fluoroscopy"), "RF", "Radio Fluoroscopy"),
):
    for _name in _names:
        MODALITIES[_name] = (_code, _display)

#: Legacy detail block per ServiceRequest order type.
DETAIL_BLOCK = {
    "laboratory": "labDetail",
    "radiology": "radiologyDetail",
    "procedure": "procedureDetail",
    "referral": "referralDetail",
    "nursing": "nursingDetail",
    "activity": "activityDetail",
}


def _priority_field(resource: JSON, path: str, value: str | None) -> None:
    """The lab priority is the order's priority; only a value that differs from the
    top-level `priority` needs its own extension."""
    if value is None:
        return
    if resource.get("priority") is None:
        resource["priority"] = value
    elif resource["priority"] != value:
        add_ext(resource, path, value)


def _text_list(value: str) -> list[JSON]:
    return [{"text": value}]


def to_fhir(payload: Mapping[str, Any], base: JSON, order_type: OrderType) -> JSON:
    """Complete `base` as the ServiceRequest of `order_type`."""
    block = DETAIL_BLOCK[order_type.name]
    d: Mapping[str, Any] = payload.get(block) or {}
    r: JSON = {**base, "category": order_type.category(), "code": to_concept(payload["orderCode"])}
    name = order_type.name
    if name == "laboratory":
        _priority_field(r, f"{block}.priority", d.get("priority"))
        if d.get("collectionDateTime") is not None:
            r["occurrenceDateTime"] = d["collectionDateTime"]
        for field in ("specimenType", "fastingRequired"):
            if d.get(field) is not None:
                add_ext(r, f"{block}.{field}", d[field])
    elif name == "radiology":
        if d.get("modality") is not None:
            detail: JSON = {"text": d["modality"]}
            known = MODALITIES.get(str(d["modality"]).strip().lower())
            if known is not None:
                detail["coding"] = [{"system": DICOM, "code": known[0], "display": known[1]}]
            r["orderDetail"] = [detail]
        if d.get("bodySite") is not None:
            r["bodySite"] = _text_list(d["bodySite"])
        if d.get("contrast") is not None:
            add_ext(r, f"{block}.contrast", d["contrast"])
        if d.get("clinicalIndication") is not None:
            r["reasonCode"] = _text_list(d["clinicalIndication"])
    elif name == "procedure":
        if d.get("bodySite") is not None:
            r["bodySite"] = _text_list(d["bodySite"])
        if d.get("scheduledDateTime") is not None:
            r["occurrenceDateTime"] = d["scheduledDateTime"]
    elif name == "referral":
        if d.get("referralType") is not None:
            add_ext(r, f"{block}.referralType", d["referralType"])
        if d.get("referToFacilityId") is not None:
            r["performer"] = [reference("Organization", d["referToFacilityId"])]
        if d.get("referToSpecialty") is not None:
            r["performerType"] = {"text": d["referToSpecialty"]}
        if d.get("urgency") is not None:
            # The referral's urgency is what the receiving service triages on: it is the
            # FHIR priority; a different top-level priority is kept in an extension.
            if r.get("priority") not in (None, d["urgency"]):
                add_ext(r, "priority", r["priority"])
            r["priority"] = d["urgency"]
        if d.get("clinicalSummary") is not None:
            r["reasonCode"] = _text_list(d["clinicalSummary"])
    elif name == "nursing":
        if d.get("instructions") is not None:
            r["orderDetail"] = _text_list(d["instructions"])
        if d.get("frequency") is not None:
            freq = parse_frequency(str(d["frequency"]))
            r["occurrenceTiming"] = freq.timing
            if freq.as_needed:
                r["asNeededBoolean"] = True
    elif name == "activity":
        if d.get("activityType") is not None:
            r["orderDetail"] = _text_list(d["activityType"])
        if d.get("instructions") is not None:
            r["patientInstruction"] = d["instructions"]
    return r


def _first_text(items: Any) -> str | None:
    return text_of(items[0]) if isinstance(items, list) and items else None


def _put(out: JSON, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def detail_of(
    resource: Mapping[str, Any], order_type: OrderType, task: Mapping[str, Any] | None
) -> JSON:
    """ServiceRequest (+ the referral's Task) → the legacy detail block of `order_type`."""
    block = DETAIL_BLOCK[order_type.name]
    name = order_type.name
    out: JSON = {}
    if name == "laboratory":
        _put(out, "priority", ext_value(resource, f"{block}.priority") or resource.get("priority"))
        _put(out, "specimenType", ext_value(resource, f"{block}.specimenType"))
        _put(out, "fastingRequired", ext_value(resource, f"{block}.fastingRequired"))
        _put(out, "collectionDateTime", resource.get("occurrenceDateTime"))
    elif name == "radiology":
        _put(out, "modality", _first_text(resource.get("orderDetail")))
        _put(out, "bodySite", _first_text(resource.get("bodySite")))
        _put(out, "contrast", ext_value(resource, f"{block}.contrast"))
        _put(out, "clinicalIndication", _first_text(resource.get("reasonCode")))
    elif name == "procedure":
        _put(out, "bodySite", _first_text(resource.get("bodySite")))
        _put(out, "scheduledDateTime", resource.get("occurrenceDateTime"))
    elif name == "referral":
        _put(out, "referralType", ext_value(resource, f"{block}.referralType"))
        performers = resource.get("performer") or []
        _put(
            out,
            "referToFacilityId",
            legacy_id_of(performers[0], "Organization") if performers else None,
        )
        _put(out, "referToSpecialty", text_of(resource.get("performerType")))
        _put(out, "urgency", resource.get("priority"))
        _put(out, "clinicalSummary", _first_text(resource.get("reasonCode")))
        out["scheduledAppointmentId"] = scheduled_appointment_id(task)
        out["referralStatus"] = referral_status(task)
    elif name == "nursing":
        _put(out, "instructions", _first_text(resource.get("orderDetail")))
        _put(out, "frequency", frequency_of(resource.get("occurrenceTiming")))
    elif name == "activity":
        _put(out, "activityType", _first_text(resource.get("orderDetail")))
        _put(out, "instructions", resource.get("patientInstruction"))
    return out


def referral_status(task: Mapping[str, Any] | None) -> str | None:
    """The referral's tracking status: its Task's `businessStatus` (None before activation)."""
    if not task:
        return None
    concept = task.get("businessStatus")
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("system") == REFERRAL_STATUS_SYSTEM:
            return str(coding.get("code"))
    return text_of(concept)


def scheduled_appointment_id(task: Mapping[str, Any] | None) -> str | None:
    """The legacy id of the Appointment the referral's Task output names, if any."""
    for output in (task or {}).get("output") or ():
        ref = (output or {}).get("valueReference") or {}
        found = legacy_id_of(ref, "Appointment")
        if found is not None:
            return found
    return None
