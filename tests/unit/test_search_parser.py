"""The FHIR search parser on its own (app/store/search/query.py): what a query string
becomes, and which inputs are refused with a 400 naming the parameter.
See: https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.errors import ValidationFailed
from app.store.search.query import (
    MAX_COUNT,
    Cursor,
    DateValue,
    Include,
    ReferenceValue,
    TokenValue,
    parse_search,
)


def _one(params: list[tuple[str, str]], rtype: str = "ServiceRequest"):  # type: ignore[no-untyped-def]
    query = parse_search(rtype, params, strict=True)
    assert len(query.criteria) == 1
    return query.criteria[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://loinc.org|58410-2", TokenValue("http://loinc.org", "58410-2")),
        ("58410-2", TokenValue(None, "58410-2")),  # any system
        ("|58410-2", TokenValue("", "58410-2")),  # no system
        ("http://loinc.org|", TokenValue("http://loinc.org", None)),  # any code in the system
    ],
)
def test_token_forms(raw: str, expected: TokenValue) -> None:
    assert _one([("code", raw)]).values == (expected,)


def test_commas_are_or_and_a_backslash_escapes_one() -> None:
    criterion = _one([("code", r"a,b\,c")])
    assert [v.code for v in criterion.values] == ["a", "b,c"]


def test_references_take_type_from_the_value_or_the_modifier() -> None:
    assert _one([("subject", "Patient/p1")]).values == (ReferenceValue("Patient", "p1"),)
    assert _one([("subject:Patient", "p1")]).values == (ReferenceValue("Patient", "p1"),)
    assert _one([("subject", "p1")]).values == (ReferenceValue(None, "p1"),)
    absolute = _one([("subject", "https://x.example/fhir/Patient/p2")])
    assert absolute.values == (ReferenceValue("Patient", "p2"),)


def test_date_prefix_and_precision_become_a_range() -> None:
    [value] = _one([("authored", "ge2024-03")]).values
    assert value == DateValue(
        "ge", datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    )
    [plain] = _one([("authored", "2024-03-05")]).values
    assert plain.prefix == "eq"
    assert plain.high - plain.low == datetime(2024, 1, 2) - datetime(2024, 1, 1)


@pytest.mark.parametrize("bad", ["2024-13", "yesterday", "ge", "2024-02-30"])
def test_malformed_dates_are_400_naming_the_parameter(bad: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_search("ServiceRequest", [("authored", bad)], strict=True)
    assert err.value.issues[0].path == "authored"


def test_count_is_capped_and_must_be_a_number() -> None:
    assert parse_search("ServiceRequest", [("_count", "5")]).count == 5
    assert parse_search("ServiceRequest", [("_count", "999999")]).count == MAX_COUNT
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("_count", "-1")])


def test_sort_by_the_types_date_or_special_keys_only() -> None:
    query = parse_search("ServiceRequest", [("_sort", "-_lastUpdated")])
    assert (query.sort_column, query.descending) == ("last_updated", True)
    with pytest.raises(ValidationFailed) as err:
        parse_search("ServiceRequest", [("_sort", "status")])
    assert "use one of" in err.value.message
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("_sort", "_id,_lastUpdated")])


def test_unknown_parameters_warn_by_default_and_fail_when_strict() -> None:
    lenient = parse_search("ServiceRequest", [("colour", "red")])
    assert lenient.criteria == []
    assert [w.severity for w in lenient.warnings] == ["warning"]
    assert lenient.echo == []  # an ignored parameter is not echoed in the links
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("colour", "red")], strict=True)


def test_modifiers_the_type_does_not_support_are_refused() -> None:
    for name in ("code:text", "authored:missing", "subject:identifier"):
        with pytest.raises(ValidationFailed):
            parse_search("ServiceRequest", [(name, "x")])


def test_includes_must_name_a_reference_parameter_of_the_searched_type() -> None:
    query = parse_search("ServiceRequest", [("_include", "ServiceRequest:subject")])
    assert query.includes == [Include("ServiceRequest", "subject", None)]
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("_include", "MedicationRequest:subject")])
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("_include", "ServiceRequest:status")])


def test_nul_characters_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("code", "a\x00b")])


def test_cursor_round_trips_and_garbage_is_400() -> None:
    cursor = Cursor("next", "_id", None, "ord-1")
    query = parse_search("ServiceRequest", [("_cursor", cursor.encode())])
    assert query.cursor == cursor
    with pytest.raises(ValidationFailed):
        parse_search("ServiceRequest", [("_cursor", "not-a-cursor")])


def test_filtering_parameters_are_echoed_in_order_for_paging_links() -> None:
    query = parse_search("ServiceRequest", [("status", "active"), ("_count", "2"), ("code", "x")])
    assert query.echo == [("status", "active"), ("code", "x")]
