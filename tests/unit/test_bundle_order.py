"""The order a transaction's entries run in (app/fhir/bundles.py `_processing_order`):
the spec's DELETE, POST, PUT, GET, and among POSTs, a resource after the ones it
references in the same Bundle, whatever their order in the Bundle.
See: https://hl7.org/fhir/R4/http.html#trules
"""

from __future__ import annotations

from typing import Any

from app.fhir.bundles import Entry, _processing_order


def _entry(
    index: int, method: str, url: str, resource: Any = None, full_url: str | None = None
) -> Entry:
    return Entry(index, method, url, resource, full_url, None, None)


def _order(entries: list[Entry], ids: dict[str, str]) -> list[int]:
    return [e.index for e in _processing_order(entries, ids)]


def test_methods_run_post_then_put_then_get_whatever_the_bundle_order() -> None:
    entries = [
        _entry(0, "GET", "Patient/p1"),
        _entry(1, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"}),
        _entry(2, "POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:a"),
    ]
    assert _order(entries, {"urn:uuid:a": "Patient/x"}) == [2, 1, 0]


def test_a_post_runs_after_the_posts_it_references() -> None:
    ids = {
        "urn:uuid:pat": "Patient/p",
        "urn:uuid:enc": "Encounter/e",
        "urn:uuid:ord": "ServiceRequest/o",
    }
    order = {
        "resourceType": "ServiceRequest",
        "subject": {"reference": "Patient/p"},
        "encounter": {"reference": "Encounter/e"},
    }
    encounter = {"resourceType": "Encounter", "subject": {"reference": "Patient/p"}}
    entries = [
        _entry(0, "POST", "ServiceRequest", order, "urn:uuid:ord"),
        _entry(1, "POST", "Encounter", encounter, "urn:uuid:enc"),
        _entry(2, "POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:pat"),
    ]
    assert _order(entries, ids) == [2, 1, 0]


def test_independent_posts_keep_their_bundle_order() -> None:
    ids = {"urn:uuid:a": "Patient/a", "urn:uuid:b": "Patient/b"}
    entries = [
        _entry(0, "POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:a"),
        _entry(1, "POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:b"),
    ]
    assert _order(entries, ids) == [0, 1]


def test_a_reference_cycle_keeps_the_bundle_order_and_loses_no_entry() -> None:
    ids = {"urn:uuid:a": "Basic/a", "urn:uuid:b": "Basic/b"}
    a = {"resourceType": "Task", "basedOn": [{"reference": "Basic/b"}]}
    b = {"resourceType": "Task", "basedOn": [{"reference": "Basic/a"}]}
    entries = [
        _entry(0, "POST", "Task", a, "urn:uuid:a"),
        _entry(1, "POST", "Task", b, "urn:uuid:b"),
    ]
    assert sorted(_order(entries, ids)) == [0, 1]
    assert len(_order(entries, ids)) == 2


def test_a_reference_to_a_resource_outside_the_bundle_changes_nothing() -> None:
    ids = {"urn:uuid:a": "ServiceRequest/a", "urn:uuid:b": "ServiceRequest/b"}
    entries = [
        _entry(
            0,
            "POST",
            "ServiceRequest",
            {"subject": {"reference": "Patient/elsewhere"}},
            "urn:uuid:a",
        ),
        _entry(
            1,
            "POST",
            "ServiceRequest",
            {"basedOn": [{"reference": "ServiceRequest/a"}]},
            "urn:uuid:b",
        ),
    ]
    assert _order(entries, ids) == [0, 1]
