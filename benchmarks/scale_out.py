"""Scale-out checks: what must hold when two or more server processes share one store.

`--servers N` runs the load phases spread over N `orders-service serve` processes on
different ports, sharing PostgreSQL and Redis (issue 13, item 5). Throughput alone does not
show that the app tier scales out: a per-process cache, a per-process idempotency record or a
version check done in memory would pass a load run and still be wrong. These checks race the
servers against each other through the public API, the way two hosts behind a load balancer
would be raced by clients retrying on another host:

- the same `clientMutationId`, sent to every server at once and then again one by one,
  creates one order (the replay cache and its database backstop are shared);
- compare-and-set: PUTs with the same `If-Match` on every server at once, exactly one wins;
- `$activate` of one draft on every server at once activates it once and makes one Task;
- a write on one server is read back, at its new version, from every other (no stale
  per-process read cache);
- a token is verified by every server (the per-process verification cache holds nothing a
  second process needs).

Each check prints what it saw; any failure makes the run exit non-zero.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks import seed as seeding
from benchmarks.load import HttpClient
from benchmarks.phases import FHIR, Bench

RACERS_PER_SERVER = 4


def _race(ports: list[int], call: Callable[[HttpClient], Any]) -> list[Any]:
    """`call` from RACERS_PER_SERVER threads per server, released together."""
    n = RACERS_PER_SERVER * len(ports)
    gate = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        http = HttpClient("127.0.0.1", ports[i % len(ports)])
        gate.wait()
        out[i] = call(http)
        http.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def _etag(headers: Any) -> int:
    return int(headers["ETag"].removeprefix("W/").strip('"'))


def check(bench: Bench) -> tuple[list[str], bool]:
    """Run every check against `bench.ports`; returns the report lines and whether all held."""
    ports = bench.ports
    lines = [f"Scale-out checks across {len(ports)} servers (ports {ports}):"]
    ok_all = True

    def verdict(name: str, ok: bool, seen: str) -> None:
        nonlocal ok_all
        ok_all = ok_all and ok
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {name}: {seen}")

    # 1. one clientMutationId, every server at once, then once more on each
    pid, eid = bench.seeder.cds_patients(1)[0]
    body = orjson.dumps(seeding.legacy_medication(pid, eid, f"scale-{uuid.uuid4().hex}"))

    def create(http: HttpClient) -> tuple[int, str | None]:
        status, _h, data = http.request("POST", "/api/v1/orders", body, bench.json_headers)
        return status, orjson.loads(data).get("orderId") if status in (200, 201) else None

    raced = _race(ports, create)
    replayed = [create(HttpClient("127.0.0.1", p)) for p in ports]
    # A racer that finds the first request still in flight is told 409 DUPLICATE_MUTATION
    # (DESIGN §5); every answer with an order names the same one, and so does every replay.
    ids = {order_id for _s, order_id in raced + replayed if order_id}
    statuses = sorted(s for s, _id in raced)
    verdict(
        "one clientMutationId raced on every server, then replayed on each",
        len(ids) == 1
        and all(order_id for _s, order_id in replayed)
        and set(statuses) <= {200, 201, 409},
        f"raced: statuses {statuses}; replays: {sorted(s for s, _i in replayed)}; "
        f"distinct order ids {len(ids)}",
    )

    # 2. compare-and-set: the same If-Match on every server at once
    draft = bench.seeder.drafts(1, "SCALE-PUT")[0]
    put_body = orjson.dumps({**draft.content, "id": draft.id, "note": [{"text": "raced"}]})
    put_headers = {**bench.fhir_headers, "If-Match": f'W/"{draft.version}"'}

    def put(http: HttpClient) -> int:
        status, _h, _d = http.request(
            "PUT", f"{FHIR}/ServiceRequest/{draft.id}", put_body, put_headers
        )
        return status

    put_statuses = _race(ports, put)
    won = put_statuses.count(200)
    verdict(
        "PUT with one If-Match raced on every server",
        won == 1 and all(s in (200, 409, 412) for s in put_statuses),
        f"{won} x 200, others {sorted(s for s in put_statuses if s != 200)}",
    )

    # 3. read-your-write from every other server: the winner's version everywhere
    versions = set()
    for port in ports:
        status, headers, _d = HttpClient("127.0.0.1", port).request(
            "GET", f"{FHIR}/ServiceRequest/{draft.id}", None, bench.fhir_headers
        )
        versions.add(_etag(headers) if status == 200 else -status)
    verdict(
        "a write on one server read back from every server",
        versions == {draft.version + 1},
        f"versions seen {sorted(versions)} (expected {draft.version + 1})",
    )

    # 4. $activate of one draft on every server at once: one activation, one Task
    target = bench.seeder.drafts(1, "SCALE-ACT")[0]
    read_headers = bench.fhir_read_headers

    def activate(http: HttpClient) -> int:
        status, _h, _d = http.request(
            "POST",
            f"{FHIR}/ServiceRequest/{target.id}/$activate",
            None,
            {**read_headers, "If-Match": f'W/"{target.version}"'},
        )
        return status

    act_statuses = _race(ports, activate)
    status, _h, data = HttpClient("127.0.0.1", ports[-1]).request(
        "GET", f"{FHIR}/Task?focus=ServiceRequest/{target.id}", None, read_headers
    )
    tasks = orjson.loads(data).get("total") if status == 200 else None
    verdict(
        "$activate of one draft raced on every server",
        act_statuses.count(200) == 1 and tasks == 1,
        f"{act_statuses.count(200)} x 200, others "
        f"{sorted(s for s in act_statuses if s != 200)}; Tasks for it: {tasks}",
    )

    # 5. the same token on every server
    seen = [
        HttpClient("127.0.0.1", p).request(
            "GET", f"{FHIR}/ServiceRequest/{draft.id}", None, bench.fhir_headers
        )[0]
        for p in ports
    ]
    verdict("one token verified by every server", set(seen) == {200}, f"statuses {seen}")
    return lines, ok_all
