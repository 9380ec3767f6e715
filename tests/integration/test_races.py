"""Races against a real HTTP server backed by a real database (both backends).

Each test fires concurrent requests from threads at a live server; the database's own
atomicity (compare-and-set update, unique conditional key) must decide the winners.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer, TokenFactory
from tests.fhir_data import patient, service_request

RACERS = 10


def _race(fn: Any, n: int = RACERS) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


@pytest.fixture
def seeded(live_server: LiveServer, headers: TokenFactory) -> tuple[str, dict[str, str]]:
    admin = headers("ADMIN")
    r = requests.post(
        f"{live_server.url}/fhir/R4/Patient", json=patient(), headers=admin, timeout=10
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], headers("CLINICIAN")


@pytest.mark.slow
def test_ten_writers_one_if_match_exactly_one_wins(
    live_server: LiveServer, seeded: tuple[str, dict[str, str]]
) -> None:
    pid, clin = seeded
    base = f"{live_server.url}/fhir/R4/ServiceRequest"
    created = requests.post(base, json=service_request(pid), headers=clin, timeout=10).json()
    rid = created["id"]

    def put(i: int) -> requests.Response:
        body = {**created, "note": [{"text": f"writer {i}"}]}
        return requests.put(
            f"{base}/{rid}", json=body, headers={**clin, "If-Match": 'W/"1"'}, timeout=30
        )

    responses = _race(put)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(412) == RACERS - 1, statuses
    for r in responses:
        if r.status_code == 412:
            assert (
                r.json()["issue"][0]["details"]["coding"][0]["code"] == "OPTIMISTIC_LOCK_CONFLICT"
            )
    winner = next(r for r in responses if r.status_code == 200).json()
    current = requests.get(f"{base}/{rid}", headers=clin, timeout=10).json()
    assert current["meta"]["versionId"] == "2"
    assert current["note"] == winner["note"]
    history = requests.get(f"{base}/{rid}/_history", headers=clin, timeout=10).json()
    assert history["total"] == 2
    assert len(history["entry"]) == 2


@pytest.mark.slow
def test_ten_identical_conditional_creates_make_one_resource(
    live_server: LiveServer, seeded: tuple[str, dict[str, str]]
) -> None:
    pid, clin = seeded
    base = f"{live_server.url}/fhir/R4/ServiceRequest"
    body = service_request(pid, identifier=[{"system": "urn:placer", "value": "ORD-42"}])
    cond = {**clin, "If-None-Exist": "identifier=urn:placer|ORD-42"}

    responses = _race(lambda i: requests.post(base, json=body, headers=cond, timeout=30))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == RACERS - 1, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    found = requests.get(f"{base}?identifier=urn:placer|ORD-42", headers=clin, timeout=10).json()
    assert found["total"] == 1


@pytest.mark.slow
def test_ten_update_as_create_with_one_client_id_make_one_version_one(
    live_server: LiveServer, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")
    url = f"{live_server.url}/fhir/R4/Patient/race-patient-1"

    responses = _race(
        lambda i: requests.put(
            url, json=patient("race-patient-1", gender="female"), headers=admin, timeout=30
        )
    )
    statuses = sorted(r.status_code for r in responses)
    # Exactly one creation; every other PUT applies on top of it as an update (last writer wins).
    assert statuses.count(201) == 1, statuses
    assert statuses.count(200) == RACERS - 1, statuses
    history = requests.get(f"{url}/_history", headers=headers("CLINICIAN"), timeout=10).json()
    assert history["total"] == 1 + statuses.count(200)


@pytest.mark.slow
@pytest.mark.parametrize("sort", ["", "_lastUpdated", "-_lastUpdated", "authored"])
def test_paging_250_with_count_7_has_no_repeat_or_gap_while_inserting(
    live_server: LiveServer, seeded: tuple[str, dict[str, str]], sort: str
) -> None:
    pid, clin = seeded
    base = f"{live_server.url}/fhir/R4/ServiceRequest"
    session = requests.Session()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "ServiceRequest"},
                "resource": service_request(pid, authoredOn=f"2026-01-{1 + i % 28:02d}T10:00:00Z"),
            }
            for i in range(250)
        ],
    }
    r = session.post(f"{live_server.url}/fhir/R4", json=bundle, headers=clin, timeout=120)
    assert r.status_code == 200, r.text[:500]
    originals = {e["resource"]["id"] for e in r.json()["entry"]}
    assert len(originals) == 250

    stop = threading.Event()
    inserted: list[str] = []

    def writer() -> None:
        while not stop.is_set():
            resp = session.post(base, json=service_request(pid), headers=clin, timeout=30)
            if resp.status_code == 201:
                inserted.append(resp.json()["id"])
            # Ascending sorts put every insert at the end: a writer much faster than the
            # reader (a loaded machine) would keep the walk from ever reaching the end.
            stop.wait(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        url: str | None = f"{base}?patient={pid}&_count=7" + (f"&_sort={sort}" if sort else "")
        pages = 0
        while url:
            page = session.get(url, headers=clin, timeout=30).json()
            assert page["resourceType"] == "Bundle", page
            seen += [e["resource"]["id"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
            pages += 1
            assert pages < 200, (
                f"paging does not terminate {len(seen)} {len(set(seen))} {len(inserted)} {url}"
            )
    finally:
        stop.set()
        thread.join()
    assert inserted, "the writer thread must have inserted during the walk"
    assert len(seen) == len(set(seen)), "a resource was repeated across pages"
    assert originals <= set(seen), f"{len(originals - set(seen))} resources were skipped"
