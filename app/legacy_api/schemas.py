"""Request schemas of the legacy `/api/v1` face (seeds/api-contracts.txt, DESIGN §5).

Every schema rejects unknown fields, JSON values of the wrong type (no coercion: `"5"` is
not a number, `"yes"` not a boolean), blank strings and nulls. `load(schema, data)` turns
every problem into one `Issue` with its field path (`medicationDetail.dose`,
`orders[3].orderCode.code`) and raises `ValidationFailed` (400 VALIDATION_ERROR) listing
them all at once.

Decisions (DESIGN: "every field optional unless the seed shows it"):
* a create needs `patientId`, `encounterId`, `orderType` and `orderCode` {system, code};
  a detail block, when sent, must be the one of its type (`lab` and `laboratory` share
  `labDetail`). The block itself is optional (DESIGN §5) except for medication (the seed
  shows dosing in it) and referral (the receiving service is named in it); fields inside
  the blocks are optional;
* `referralDetail.referralStatus` and `.scheduledAppointmentId` are read-only;
* frequencies must be one the mapping understands (DESIGN §6, plus QnMIN, QnD, weekly
  forms and "<x> PRN"; see `app.legacy_api.mapping.frequency`);
* date-times are RFC 3339 in the form FHIR stores (`2026-04-18T09:00:00Z`, or a date);
* legacy ids are `[A-Za-z0-9._-]{1,64}` (they map to FHIR ids through `app.domain.ids`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.domain.clock import parse_range
from app.errors import Issue, ValidationFailed
from app.legacy_api.fields import (
    AsciiInteger,
    DateTimeText,
    FrequencyText,
    LegacyId,
    ReadOnly,
    StrictBoolean,
    StrictNumber,
    Text,
    int_field,
    priority_field,
)
from app.legacy_api.mapping.common import DETAIL_BLOCKS

ORDER_TYPE_NAMES = tuple(DETAIL_BLOCKS)
LEGACY_STATUSES = ("draft", "active", "on-hold", "completed", "cancelled", "entered-in-error")
ALL_BLOCKS = tuple(dict.fromkeys(DETAIL_BLOCKS.values()))
#: Order types whose detail block must be sent; every other type may omit its block.
BLOCK_REQUIRED = frozenset({"medication", "referral"})
MAX_BATCH = 100
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


class CodeSchema(Schema):
    """`{system, code, display}` (orderCode, medicationCode)."""

    system = Text(required=True, max_length=500)
    code = Text(required=True, max_length=256)
    display = Text(max_length=1000)


class MedicationDetailSchema(Schema):
    medicationCode = fields.Nested(CodeSchema)
    dose = StrictNumber()
    doseUnit = Text(max_length=50)
    route = Text(max_length=100)
    frequency = FrequencyText()
    durationDays = int_field(maximum=3650)
    prn = StrictBoolean()

    @validates_schema(skip_on_field_errors=False)
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        if "dose" in data and "doseUnit" not in data:
            errors["doseUnit"] = ["is required when dose is given"]
        frequency = data.get("frequency")
        if frequency and "PRN" in frequency.upper().split() and data.get("prn") is False:
            errors["prn"] = [f"contradicts frequency {frequency!r} (as needed)"]
        if errors:
            raise ValidationError(errors)


class LabDetailSchema(Schema):
    priority = priority_field()
    specimenType = Text(max_length=200)
    fastingRequired = StrictBoolean()
    collectionDateTime = DateTimeText()


class RadiologyDetailSchema(Schema):
    modality = Text(max_length=100)
    bodySite = Text(max_length=200)
    contrast = StrictBoolean()
    clinicalIndication = Text(max_length=4000)


class ProcedureDetailSchema(Schema):
    bodySite = Text(max_length=200)
    scheduledDateTime = DateTimeText()


class ReferralDetailSchema(Schema):
    referralType = Text(max_length=100)
    referToFacilityId = LegacyId()
    referToSpecialty = Text(max_length=200)
    urgency = priority_field()
    clinicalSummary = Text(max_length=10000)
    referralStatus = ReadOnly()
    scheduledAppointmentId = ReadOnly()


class NursingDetailSchema(Schema):
    instructions = Text(max_length=4000)
    frequency = FrequencyText()


class ActivityDetailSchema(Schema):
    activityType = Text(max_length=200)
    instructions = Text(max_length=4000)


class DietDetailSchema(Schema):
    dietType = Text(max_length=200)
    texture = Text(max_length=200)
    fluidRestrictionMl = StrictNumber()
    supplements = fields.List(Text(max_length=200), validate=validate.Length(max=50))


class OrderFieldsSchema(Schema):
    """What an order and an order-set template share: type, code, priority, notes, detail."""

    orderType = fields.String(required=True, validate=validate.OneOf(ORDER_TYPE_NAMES))
    orderCode = fields.Nested(CodeSchema, required=True)
    priority = priority_field()
    notes = Text(max_length=10000)
    medicationDetail = fields.Nested(MedicationDetailSchema)
    labDetail = fields.Nested(LabDetailSchema)
    radiologyDetail = fields.Nested(RadiologyDetailSchema)
    procedureDetail = fields.Nested(ProcedureDetailSchema)
    referralDetail = fields.Nested(ReferralDetailSchema)
    nursingDetail = fields.Nested(NursingDetailSchema)
    activityDetail = fields.Nested(ActivityDetailSchema)
    dietDetail = fields.Nested(DietDetailSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_detail_block(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        """At most one detail block, the one of the order's type, required only for the
        types in BLOCK_REQUIRED (judged on what was sent, so a block with errors of its own
        is not also reported missing)."""
        if not isinstance(original, Mapping):
            return
        order_type = original.get("orderType")
        if not isinstance(order_type, str) or order_type not in DETAIL_BLOCKS:
            return  # the orderType error says it all
        expected = DETAIL_BLOCKS[order_type]
        errors: dict[str, list[str]] = {}
        for block in ALL_BLOCKS:
            if block != expected and block in original:
                errors[block] = [f"is not allowed for orderType {order_type!r} (send {expected})"]
        if expected not in original and order_type in BLOCK_REQUIRED:
            errors[expected] = [f"is required for orderType {order_type!r}"]
        if errors:
            raise ValidationError(errors)


class CreateOrderSchema(OrderFieldsSchema):
    """`POST /v1/orders` (and each batch item)."""

    patientId = LegacyId(required=True)
    encounterId = LegacyId(required=True)
    clientMutationId = Text(max_length=200)


class OrderTemplateSchema(OrderFieldsSchema):
    """One entry of an order set's `orderTemplates` (no patient, encounter or key)."""


class BatchSchema(Schema):
    """`POST /v1/orders/batch` envelope: 1..100 objects. Each item is then validated on its
    own with `load(CreateOrderSchema, item, prefix=f"orders[{i}]")`, so one bad item
    fails alone in the 207 (issue 4: "each created or failed on its own")."""

    orders = fields.List(
        fields.Dict(), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class StrictBatchSchema(Schema):
    """The whole batch validated at once (any bad item → 400 naming `orders[i]…`)."""

    orders = fields.List(
        fields.Nested(CreateOrderSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )


# ---------------------------------------------------------------- bodies: mutations
class ActivateSchema(Schema):
    """`POST /v1/orders/:id/activate`: the seed shows no body; a `version` is checked."""

    version = int_field()


class AcknowledgeSchema(Schema):
    reason = Text(required=True, max_length=2000)
    version = int_field(required=True)


class ReasonVersionSchema(Schema):
    """Cancel, hold and correction: `{reason, version}`."""

    reason = Text(required=True, max_length=2000)
    version = int_field(required=True)


CancelSchema = HoldSchema = CorrectionSchema = ReasonVersionSchema


class ResumeSchema(Schema):
    version = int_field(required=True)


# ---------------------------------------------------------------- bodies: order sets
class OrderSetCreateSchema(Schema):
    name = Text(required=True, max_length=500)
    description = Text(max_length=10000)
    orderTemplates = fields.List(
        fields.Nested(OrderTemplateSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )


class InstantiateSchema(Schema):
    patientId = LegacyId(required=True)
    encounterId = LegacyId(required=True)


# ---------------------------------------------------------------- query strings
#: Past this, a page is certainly empty; the bound keeps page numbers ordinary integers.
MAX_PAGE = 100_000


class _PagedQuery(Schema):
    """Query values arrive as strings, so page numbers are parsed from text here."""

    page = AsciiInteger(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    pageSize = AsciiInteger(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )
    from_ = DateTimeText(data_key="from")
    to = DateTimeText()

    @validates_schema(skip_on_field_errors=False)
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (
            "from_" in data
            and "to" in data
            and parse_range(data["from_"])[0] > parse_range(data["to"])[1]
        ):
            raise ValidationError({"to": ["must not be before from"]})


class OrderListQuerySchema(_PagedQuery):
    patientId = LegacyId()
    encounterId = LegacyId()
    orderType = fields.String(validate=validate.OneOf(ORDER_TYPE_NAMES))
    status = fields.String(validate=validate.OneOf(LEGACY_STATUSES))
    priority = priority_field()


class OrderSetListQuerySchema(Schema):
    orderType = fields.String(validate=validate.OneOf(ORDER_TYPE_NAMES))
    search = Text(max_length=200)
    page = AsciiInteger(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    pageSize = AsciiInteger(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


class ReferralListQuerySchema(_PagedQuery):
    patientId = LegacyId()
    referToFacilityId = LegacyId()
    referralStatus = Text(max_length=100)
    urgency = priority_field()


# ---------------------------------------------------------------- loading
def _flatten(messages: Any, path: str) -> Iterator[tuple[str | None, str]]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            yield from _flatten(value, child)
    elif isinstance(messages, list | tuple):
        for item in messages:
            yield from _flatten(item, path)
    else:
        yield (path or None), str(messages)


@functools.cache
def _shared(schema: type[Schema]) -> Schema:
    """One instance per schema class, built once: building a Schema deep-copies its declared
    fields (5% of a legacy create's CPU). Loading keeps no per-call state on the instance in
    marshmallow 4 (no `context`), so threads may share it."""
    return schema()


def load(schema: type[Schema], data: Any, *, prefix: str = "") -> dict[str, Any]:
    """Validate `data` with `schema`; return the loaded dict (query keys `from` → `from`).

    Raises ValidationFailed with one Issue per problem, `path` like `medicationDetail.dose`
    (under `prefix`, e.g. `orders[2]`, when given); `details` lists the same problems as
    `{"field", "message"}` for the legacy error body.
    """
    instance = _shared(schema)
    try:
        loaded: dict[str, Any] = instance.load(data)
    except ValidationError as exc:
        issues = []
        for path, message in _flatten(exc.messages, prefix):
            if message == "Invalid input type." and path in (None, prefix or None):
                message = "must be a JSON object"
            issues.append(Issue(message, path))
        details = [{"field": i.path, "message": i.message} for i in issues]
        raise ValidationFailed(
            f"The request has {len(issues)} invalid field(s)", issues=issues, details=details
        ) from None
    if "from_" in loaded:
        loaded["from"] = loaded.pop("from_")
    return loaded
