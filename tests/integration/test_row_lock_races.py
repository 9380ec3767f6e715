"""What a racing client that sent NO version sees, on PostgreSQL (DESIGN §5, storage.md).

The compare-and-set UPDATE alone already stops lost updates. The row lock taken when an order
is read for a change (`OrderService.load`, `put_order`'s read: `SELECT … FOR UPDATE`) decides
what the loser of a race is told: it waits for the winner's commit and then acts on the
order's NEW state. Without the lock it would act on the version it read before the winner
committed, and the compare-and-set would refuse it with a version conflict the client never
asked for (it sent no `If-Match` / no `version`). SQLite has no row locks, so these run on
PostgreSQL only; mutation testing cannot reach the two `for_update=True` (docs/testing.md).

Each test races many rounds so that dropping a lock fails it reliably, not once in a while.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Flask

from app.auth.devkeys import mint_token
from app.domain.ids import to_legacy
from tests.conftest import LiveServer
from tests.fhir_data import patient, service_request

ROUNDS = 20
RACERS = 6


@pytest.fixture
def server(pg_app: Flask) -> Iterator[LiveServer]:
    with LiveServer(pg_app) as live:
        yield live


@pytest.fixture
def ward(pg_app: Flask, server: LiveServer, tenant: str) -> dict[str, Any]:
    """A patient in a fresh tenant, a clinician's headers and both faces' base URLs."""
    settings = pg_app.config["SETTINGS"]

    def auth(role: str) -> dict[str, str]:
        token = mint_token(settings, roles=(role,), tenants=(tenant,))
        return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}

    fhir = f"{server.url}/fhir/R4"
    r = requests.put(
        f"{fhir}/Patient/pat-01LOCK",
        json=patient("pat-01LOCK"),
        headers=auth("ADMIN"),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return {"fhir": fhir, "v1": f"{server.url}/api/v1", "doc": auth("CLINICIAN")}


def _race(fn: Any, n: int = RACERS) -> list[requests.Response]:
    """n calls released together by a barrier, each on its own connection."""
    barrier = threading.Barrier(n)

    def go(i: int) -> requests.Response:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def _draft(ward: dict[str, Any], round_: int) -> dict[str, Any]:
    """A draft lab order with a code of its own, so no duplicate-order warning blocks it."""
    body = service_request(
        "pat-01LOCK", code={"coding": [{"system": "urn:race", "code": f"lock-{round_}"}]}
    )
    r = requests.post(f"{ward['fhir']}/ServiceRequest", json=body, headers=ward["doc"], timeout=10)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["meta"]["versionId"] == "1"
    assert "detectedIssue" not in created, "a CDS alert would make $activate refuse"
    return created


def _fhir_code(r: requests.Response) -> str:
    return str(r.json()["issue"][0]["details"]["coding"][0]["code"])


def _activate_fhir(ward: dict[str, Any], rid: str) -> requests.Response:
    return requests.post(
        f"{ward['fhir']}/ServiceRequest/{rid}/$activate", headers=ward["doc"], timeout=60
    )


def _activate_v1(ward: dict[str, Any], rid: str) -> requests.Response:
    # The seed's activate shows no body: no `version`.
    return requests.post(
        f"{ward['v1']}/orders/{to_legacy(rid)}/activate",
        json={},
        headers=ward["doc"],
        timeout=60,
    )


def _error_code(face: str, r: requests.Response) -> str:
    return _fhir_code(r) if face == "fhir" else str(r.json()["error"]["code"])


@pytest.mark.slow
@pytest.mark.parametrize("face", ["fhir", "v1"])
def test_racing_activations_without_a_version_lose_to_the_new_state_not_a_conflict(
    ward: dict[str, Any], face: str
) -> None:
    """`OrderService.load` locks the row: of N `$activate` without If-Match (legacy: no
    `version`) exactly one activates, and every other one, having waited for it, is told the
    order is already active (409 INVALID_STATE_TRANSITION, DESIGN §5's table) — never a
    version conflict it did not ask for."""
    activate = _activate_fhir if face == "fhir" else _activate_v1
    for round_ in range(ROUNDS):
        rid = _draft(ward, round_)["id"]
        responses = _race(lambda i, rid=rid: activate(ward, rid))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (RACERS - 1), (round_, [r.text for r in responses])
        codes = {_error_code(face, r) for r in responses if r.status_code == 409}
        assert codes == {"INVALID_STATE_TRANSITION"}, (round_, codes)
        current = requests.get(
            f"{ward['fhir']}/ServiceRequest/{rid}", headers=ward["doc"], timeout=10
        ).json()
        assert (current["status"], current["meta"]["versionId"]) == ("active", "2")


@pytest.mark.slow
def test_racing_draft_edits_without_if_match_all_apply_in_turn(ward: dict[str, Any]) -> None:
    """`put_order` locks the row it reads: PUT without If-Match is "this content, now"
    (decisions.md), so N racing edits of a draft each wait for the previous one and apply on
    top of it — all 200, versions 2..N+1 each given once, the last writer's note stored."""
    for round_ in range(ROUNDS):
        created = _draft(ward, round_)
        url = f"{ward['fhir']}/ServiceRequest/{created['id']}"
        bodies = [
            {**created, "note": [{"text": f"round {round_} writer {i}"}]} for i in range(RACERS)
        ]
        responses = _race(
            lambda i, url=url, bodies=bodies: requests.put(
                url, json=bodies[i], headers=ward["doc"], timeout=60
            )
        )
        assert [r.status_code for r in responses] == [200] * RACERS, (
            round_,
            [r.text for r in responses],
        )
        versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
        assert versions == list(range(2, RACERS + 2)), (round_, versions)
        last = max(responses, key=lambda r: int(r.json()["meta"]["versionId"])).json()
        current = requests.get(url, headers=ward["doc"], timeout=10).json()
        assert current["meta"]["versionId"] == str(RACERS + 1)
        assert current["note"] == last["note"]
        assert current["status"] == "draft"


@pytest.mark.slow
def test_racing_cancels_without_if_match_answer_the_cancelled_state(
    ward: dict[str, Any],
) -> None:
    """A cancel by PUT (status `revoked`, no If-Match) that loses the race waits, then sees
    the order already revoked: 409 ORDER_TERMINAL_STATE (DESIGN §5: a queued cancel learns
    the order's state), not 412 OPTIMISTIC_LOCK_CONFLICT. A status change by PUT passes
    through both locks (`put_order`'s read, then `load`), so either one alone keeps this
    answer; the two tests above pin each lock separately."""
    for round_ in range(ROUNDS):
        created = _draft(ward, round_)
        url = f"{ward['fhir']}/ServiceRequest/{created['id']}"
        body = {**created, "status": "revoked"}
        responses = _race(
            lambda i, url=url, body=body: requests.put(
                url, json=body, headers=ward["doc"], timeout=60
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * (RACERS - 1), (round_, [r.text for r in responses])
        codes = {_fhir_code(r) for r in responses if r.status_code == 409}
        assert codes == {"ORDER_TERMINAL_STATE"}, (round_, codes)
        current = requests.get(url, headers=ward["doc"], timeout=10).json()
        assert (current["status"], current["meta"]["versionId"]) == ("revoked", "2")
