"""Parse FHIR search parameters into a `SearchQuery` (no SQL here).

See: https://hl7.org/fhir/R4/search.html — AND across repeated parameters, OR across
comma-separated values; `_count`, `_sort`, `_include`, `_revinclude`, `_summary`,
`_elements`; unknown parameters are ignored with a warning, or rejected under
`Prefer: handling=strict`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from app.domain.clock import parse_range
from app.domain.ids import is_valid_fhir_id
from app.domain.numbers import parse_count
from app.errors import Issue, ValidationFailed
from app.store.search.definitions import SearchParam, for_type, load_definitions
from app.store.search.extract import normalize_string

DEFAULT_COUNT = 20
MAX_COUNT = 1000
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
#: Parameters that shape the result rather than filter it.
RESULT_PARAMS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_format",
    "_cursor",
    "_total",
    "_pretty",
}
STRING_MODIFIERS = {None, "exact", "contains"}
SORT_SPECIAL = {"_lastUpdated": "last_updated", "_id": "id"}


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code in the system


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None
    id: str


@dataclass(frozen=True)
class DateValue:
    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class Criterion:
    name: str
    kind: str  # token | reference | date | string | id | lastUpdated | has
    param: SearchParam | None
    modifier: str | None
    values: tuple[Any, ...]
    #: For `has`: (source type, its reference parameter) — see `reverse_token`.
    via: tuple[str, str] | None = None


def reverse_token(
    source_type: str, reference_param: str, token_param: str, values: tuple[TokenValue, ...]
) -> Criterion:
    """Resources referenced through `source_type.reference_param` by a `source_type` whose
    token parameter `token_param` has one of `values`: FHIR's reverse chaining
    (`_has:Task:focus:business-status=…`, search.html#has) for the services' own use; the
    parser does not accept `_has` from clients (the CapabilityStatement does not offer it)."""
    param = for_type(source_type).params[token_param]
    if param.type != "token" or param.column is not None:
        raise ValueError(f"{source_type}.{token_param} is not an index-table token parameter")
    name = f"_has:{source_type}:{reference_param}:{token_param}"
    return Criterion(name, "has", param, None, values, (source_type, reference_param))


@dataclass(frozen=True)
class Cursor:
    direction: str  # "next" | "prev"
    sort: str
    key: Any
    id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.direction, self.sort, self.key, self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            direction, sort, key, rid = orjson.loads(raw)
            if direction not in ("next", "prev") or not all(
                isinstance(v, str) for v in (sort, rid)
            ):
                raise ValueError
            return cls(direction, sort, key, rid)
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
            raise ValidationFailed(
                "Invalid paging cursor", issues=[Issue("Invalid paging cursor", "_cursor")]
            ) from exc


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str
    target_type: str | None


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort_param: str = "_id"  # the name as the client wrote it (without "-")
    sort_column: str = "id"  # id | last_updated | sort_date
    descending: bool = False
    count: int = DEFAULT_COUNT
    cursor: Cursor | None = None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    with_total: bool = True
    elements: list[str] | None = None
    warnings: list[Issue] = field(default_factory=list)
    #: The filtering parameters as received, for `self`/`next` links.
    echo: list[tuple[str, str]] = field(default_factory=list)


def _bad(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[Issue(message, path)])


def parse_search(
    resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
) -> SearchQuery:
    definition = for_type(resource_type)
    query = SearchQuery(resource_type)
    for raw_name, raw_value in params:
        if "\x00" in raw_name or "\x00" in raw_value:
            raise _bad("Search parameters must not contain NUL characters", raw_name)
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMS:
            _result_param(query, name, modifier or None, raw_value)
            continue
        if name == "_id":
            ids = tuple(v for v in raw_value.split(",") if v)
            query.criteria.append(Criterion("_id", "id", None, None, ids))
        elif name == "_lastUpdated":
            values = tuple(_date_value(v, name) for v in raw_value.split(","))
            query.criteria.append(Criterion(name, "lastUpdated", None, None, values))
        elif name in definition.params:
            query.criteria.append(_criterion(definition.params[name], modifier or None, raw_value))
        else:
            message = f"Unknown search parameter {raw_name!r} for {resource_type}"
            if strict:
                raise _bad(message, raw_name)
            query.warnings.append(
                Issue(message + " (ignored)", raw_name, "warning", "not-supported")
            )
            continue
        query.echo.append((raw_name, raw_value))
    if query.cursor is not None:
        _check_cursor(query, query.cursor)
    return query


def _check_cursor(query: SearchQuery, cursor: Cursor) -> None:
    """A cursor is client input: it must belong to this sort, and its key must be what that
    sort's column holds (none for `_id`, an ISO instant with offset for a date), or 400."""
    ok = cursor.sort == query.sort_param and is_valid_fhir_id(cursor.id)
    if ok and query.sort_column == "id":
        ok = cursor.key is None
    elif ok:
        try:
            ok = datetime.fromisoformat(cursor.key).tzinfo is not None
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise _bad("Invalid paging cursor (not one this search returned)", "_cursor")


def _criterion(param: SearchParam, modifier: str | None, raw: str) -> Criterion:
    parts = [v for v in _split_or(raw)]
    if param.type == "token":
        if modifier not in (None,):
            raise _bad(f"Unsupported modifier :{modifier} on {param.name}", param.name)
        return Criterion(param.name, "token", param, None, tuple(_token(v) for v in parts))
    if param.type == "reference":
        target = modifier if modifier and modifier[:1].isupper() else None
        if modifier and target is None:
            raise _bad(f"Unsupported modifier :{modifier} on {param.name}", param.name)
        values = tuple(_reference(v, target) for v in parts)
        return Criterion(param.name, "reference", param, None, values)
    if param.type == "date":
        if modifier:
            raise _bad(f"Unsupported modifier :{modifier} on {param.name}", param.name)
        return Criterion(
            param.name, "date", param, None, tuple(_date_value(v, param.name) for v in parts)
        )
    if modifier not in STRING_MODIFIERS:
        raise _bad(f"Unsupported modifier :{modifier} on {param.name}", param.name)
    strings = tuple(v if modifier == "exact" else normalize_string(v) for v in parts)
    return Criterion(param.name, "string", param, modifier, strings)


def _split_or(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash (search.html#escaping)."""
    out, cur, escape = [], [], False
    for ch in raw:
        if escape:
            cur.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [v for v in out if v != ""] or [""]


def _token(value: str) -> TokenValue:
    if "|" not in value:
        return TokenValue(None, value)
    system, _, code = value.partition("|")
    return TokenValue(system, code or None)


def _reference(value: str, target: str | None) -> ReferenceValue:
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return ReferenceValue(parts[-2], parts[-1])
    return ReferenceValue(target, parts[-1])


def _date_value(value: str, name: str) -> DateValue:
    prefix = "eq"
    if value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        prefix, value = value[:2], value[2:]
    try:
        low, high = parse_range(value)
    except ValueError as exc:
        raise _bad(f"Invalid date {value!r} for {name}", name) from exc
    return DateValue(prefix, low, high)


def _result_param(query: SearchQuery, name: str, modifier: str | None, value: str) -> None:
    if name == "_count":
        count = parse_count(value)
        if count is None:
            raise _bad("_count must be a non-negative integer", "_count")
        query.count = min(count, MAX_COUNT)
    elif name == "_sort":
        _sort(query, value)
    elif name in ("_include", "_revinclude"):
        _include(query, name, modifier, value)
    elif name == "_summary":
        if value == "count":
            query.summary_count = True
        elif value != "false":
            raise _bad(f"_summary={value} is not supported (use count or false)", "_summary")
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_cursor":
        query.cursor = Cursor.decode(value)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise _bad("_total must be none, estimate or accurate", "_total")
        query.with_total = value != "none"


def _sort(query: SearchQuery, value: str) -> None:
    keys = [k for k in value.split(",") if k]
    if len(keys) != 1:
        raise _bad("_sort takes exactly one key", "_sort")
    key = keys[0]
    desc = key.startswith("-")
    key = key.lstrip("-")
    definition = for_type(query.resource_type)
    if key in SORT_SPECIAL:
        column = SORT_SPECIAL[key]
    elif key == definition.sort:
        column = "sort_date"
    else:
        allowed = ", ".join(
            ["_lastUpdated", "_id", *([definition.sort] if definition.sort else [])]
        )
        raise _bad(f"Cannot sort {query.resource_type} by {key!r}; use one of {allowed}", "_sort")
    query.sort_param, query.sort_column, query.descending = key, column, desc


def _include(query: SearchQuery, name: str, modifier: str | None, value: str) -> None:
    if modifier:
        raise _bad(f"{name}:{modifier} is not supported", name)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise _bad(f"{name} must be Type:param[:target]", name)
    source, param = parts[0], parts[1]
    definitions = load_definitions()
    if source not in definitions or param not in definitions[source].params:
        raise _bad(f"{name}={value}: unknown parameter", name)
    if definitions[source].params[param].type != "reference":
        raise _bad(f"{name}={value}: not a reference parameter", name)
    include = Include(source, param, parts[2] if len(parts) == 3 else None)
    if name == "_include":
        if source != query.resource_type:
            raise _bad(f"_include={value} must start with {query.resource_type}", name)
        query.includes.append(include)
    else:
        query.revincludes.append(include)
