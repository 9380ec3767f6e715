"""The strict field types the legacy schemas are built from: no coercion (`"5"` is not a
number, `"yes"` not a boolean), no blanks or nulls, legacy ids, RFC 3339 date-times in the
form FHIR stores, and dosing frequencies the mapping understands."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from marshmallow import ValidationError, fields, validate

from app.domain.clock import parse_range
from app.domain.ids import from_legacy, is_valid_fhir_id
from app.legacy_api.mapping.frequency import frequency_problem

PRIORITIES = ("routine", "urgent", "asap", "stat")
READ_ONLY = "is read-only: the service sets it; remove it from the request"

_LEGACY_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))?$",
    re.ASCII,  # `\d` would match any Unicode decimal digit
)


# ---------------------------------------------------------------- strict fields
class Text(fields.String):
    """A JSON string with at least one non-space character, at most `max_length` long."""

    def __init__(self, *, max_length: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():
            raise ValidationError("must not be blank")
        if "\x00" in text:
            raise ValidationError("must not contain NUL characters")
        if len(text) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters")
        return text


class LegacyId(Text):
    """A legacy id (`pat_01J…`): one that maps to a valid FHIR id (DESIGN §4)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _LEGACY_ID.fullmatch(text) or not is_valid_fhir_id(from_legacy(text)):
            raise ValidationError("is not a valid id (letters, digits, '.', '-', '_'; 1-64)")
        return text


class DateTimeText(Text):
    """An RFC 3339 date-time with offset (`2026-04-18T09:00:00Z`) or a full date; kept as
    the string sent (it is stored as a FHIR dateTime unchanged)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=40, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            if not _DATE_TIME.match(text):
                raise ValueError(text)
            if "T" in text:
                datetime.fromisoformat(text)
            else:
                date.fromisoformat(text)
            parse_range(text)  # searchable too: no overflow at the calendar's edges
        except ValueError:
            raise ValidationError(
                "must be an RFC 3339 date-time with offset (2026-04-18T09:00:00Z) or a date"
            ) from None
        return text


class FrequencyText(Text):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=20, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = frequency_problem(text)
        if problem is not None:
            raise ValidationError(problem)
        return text


class StrictBoolean(fields.Field[bool]):
    """A JSON `true`/`false`; nothing else (no "yes", 1 or "true")."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be a JSON boolean (true or false)")
        return value


class StrictNumber(fields.Field[int | float]):
    """A finite JSON number, greater than zero (ints stay ints)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("must be a JSON number")
        if not math.isfinite(value) or value <= 0:
            raise ValidationError("must be greater than 0")
        return value


class ReadOnly(fields.Field[None]):
    """A field clients may see but never send."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(error_messages={"null": READ_ONLY}, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> None:
        raise ValidationError(READ_ONLY)


def int_field(
    *, required: bool = False, minimum: int = 1, maximum: int | None = None
) -> fields.Integer:
    return fields.Integer(
        strict=True, required=required, validate=validate.Range(min=minimum, max=maximum)
    )


def priority_field(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(PRIORITIES), **kwargs)


# ---------------------------------------------------------------- bodies: orders


class AsciiInteger(fields.Integer):
    """An integer from a query string: ASCII digits only (issue 11, item 19; `int()` would
    take `٣`)."""

    _ASCII_INT = re.compile(r"^[+-]?[0-9]{1,18}$")

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int:
        if isinstance(value, str) and not self._ASCII_INT.fullmatch(value.strip()):
            raise ValidationError("must be a whole number in ASCII digits")
        result: int = super()._deserialize(value, attr, data, **kwargs)
        return result
