"""The benchmark's HTTP phases: what each client sends, and the single-use pools the write
phases consume (drafts to PUT and to activate, patients for the CDS create), seeded through
a `Seeder` just before their phase, sized from the write rates already measured.

A `Seeder` writes through the repository of the build under test: in-process for a plain
run (`InProcessSeeder`), or a worker process running the other build's code for an A/B run
(benchmarks/ab.py, benchmarks/seed_worker.py), so each database is seeded by the code that
owns its schema.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import psycopg

from benchmarks import seed as seeding
from benchmarks.load import HttpClient, Operation, PhaseResult, expect

TENANT = "bench"
FHIR = "/fhir/R4"
HTTP_PHASES = ["get", "search", "legacy-list", "post", "put", "activate", "legacy-create"]
WRITE_PHASES = ["post", "put", "activate", "legacy-create"]
PUT_DRAFTS_PER_CLIENT = 40


def vacuum_analyze(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


class Seeder(Protocol):
    """Writes the write phases' pools into one build's database."""

    def drafts(self, n: int, prefix: str) -> list[seeding.Draft]: ...

    def cds_patients(self, n: int) -> list[tuple[str, str]]: ...


class InProcessSeeder:
    """This build's repository, in this process."""

    def __init__(self, engine: Any, data: seeding.Dataset, rng: random.Random) -> None:
        self.engine, self.data, self.rng = engine, data, rng

    def drafts(self, n: int, prefix: str) -> list[seeding.Draft]:
        return seeding.drafts(self.engine, self.data, n, prefix, self.rng)

    def cds_patients(self, n: int) -> list[tuple[str, str]]:
        return seeding.cds_patients(self.engine, self.data.tenant, n)


class Bench:
    def __init__(
        self,
        args: Any,
        port: int | list[int],
        token: str,
        data: seeding.Dataset,
        dsn: str,
        seeder: Seeder,
    ):
        self.args = args
        self.dsn = dsn
        #: Client i talks to ports[i % len(ports)]: with `--servers N` the load is spread
        #: evenly over N servers that share PostgreSQL and Redis.
        self.ports = port if isinstance(port, list) else [port]
        self._next_client = itertools.count()
        self.data = data
        self.seeder = seeder
        auth = {"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT}
        self.fhir_headers = {
            **auth,
            "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json",
        }
        self.json_headers = {
            **auth,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        #: For requests without a body (GET, `$activate`): no Content-Type.
        self.fhir_read_headers = {k: v for k, v in self.fhir_headers.items() if k != "Content-Type"}
        self.put_pool: list[list[seeding.Draft]] = []
        self.activate_pool: list[seeding.Draft] = []
        self.cds_pool: list[tuple[str, str]] = []
        self.results: dict[str, PhaseResult] = {}
        self.pool_notes: dict[str, str] = {}
        #: Set while counting round trips: operations then go to an in-process app.
        self.client_override: Callable[[], Any] | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    @port.setter
    def port(self, value: int) -> None:
        self.ports = [value]

    def client(self) -> Any:
        if self.client_override is not None:
            return self.client_override()
        return HttpClient("127.0.0.1", self.ports[next(self._next_client) % len(self.ports)])

    def pool_size(self, factor: float = 2.0) -> int:
        """Enough single-use items for the next write phase: `factor` x the fastest write
        rate seen (or 300 req/s before any), over warm-up and window, plus slack."""
        rates = [self.results[p].rps for p in WRITE_PHASES if p in self.results]
        rate = factor * max(rates) if rates else 300.0
        span = self.args.warmup + self.args.duration
        return int(rate * span) + 20 * self.args.clients

    # -- the HTTP phases ------------------------------------------------------------
    def get(self, i: int) -> Operation:
        http, rng, ids = self.client(), random.Random(i), self.data.service_requests
        headers = self.fhir_read_headers

        def op() -> tuple[bool, str, str | None]:
            rid = ids[rng.randrange(len(ids))]
            status, _h, data = http.request("GET", f"{FHIR}/ServiceRequest/{rid}", None, headers)
            return expect(status, 200, data)

        return op

    def search(self, i: int) -> Operation:
        http = self.client()
        path = f"{FHIR}/ServiceRequest?patient={self.data.hot_patient}&status=active&_count=20"
        headers = self.fhir_read_headers

        def op() -> tuple[bool, str, str | None]:
            status, _h, data = http.request("GET", path, None, headers)
            return expect(status, 200, data)

        return op

    def legacy_list(self, i: int) -> Operation:
        http = self.client()
        path = f"/api/v1/orders?patientId={self.data.hot_patient_legacy}"
        headers = {k: v for k, v in self.json_headers.items() if k != "Content-Type"}

        def op() -> tuple[bool, str, str | None]:
            status, _h, data = http.request("GET", path, None, headers)
            return expect(status, 200, data)

        return op

    def post(self, i: int) -> Operation:
        http, rng = self.client(), random.Random(100 + i)
        patients, encounters = self.data.patients, self.data.encounters
        counter = itertools.count()

        def op() -> tuple[bool, str, str | None]:
            n = next(counter)
            pid = patients[rng.randrange(len(patients))]
            body = seeding.service_request(
                pid,
                encounters[pid],
                "draft",
                seeding.unique_lab(n, f"POST{i}"),
                n,
                system=seeding.BENCH_LAB,
            )
            status, _h, data = http.request(
                "POST", f"{FHIR}/ServiceRequest", orjson.dumps(body), self.fhir_headers
            )
            return expect(status, 201, data)

        return op

    def put(self, i: int) -> Operation:
        http = self.client()
        mine = self.put_pool[i]
        counter = itertools.count()

        def op() -> tuple[bool, str, str | None]:
            n = next(counter)
            draft = mine[n % len(mine)]
            body = {
                **draft.content,
                "id": draft.id,
                "note": [{"text": f"Edited by benchmark client {i}, edit {n}"}],
            }
            headers = {**self.fhir_headers, "If-Match": f'W/"{draft.version}"'}
            status, resp_headers, data = http.request(
                "PUT", f"{FHIR}/ServiceRequest/{draft.id}", orjson.dumps(body), headers
            )
            if status == 200:
                draft.version = int(resp_headers["ETag"].removeprefix("W/").strip('"'))
            elif status in (409, 412):  # resynchronise our version, count the error
                s2, h2, _d = http.request(
                    "GET", f"{FHIR}/ServiceRequest/{draft.id}", None, self.fhir_headers
                )
                if s2 == 200:
                    draft.version = int(h2["ETag"].removeprefix("W/").strip('"'))
            return expect(status, 200, data)

        return op

    def activate(self, i: int) -> Operation:
        http = self.client()
        pool = self.activate_pool
        counter = self._shared_counter
        headers = self.fhir_read_headers

        def op() -> tuple[bool, str, str | None]:
            n = next(counter)
            if n >= len(pool):
                raise StopIteration
            draft = pool[n]
            status, _h, data = http.request(
                "POST",
                f"{FHIR}/ServiceRequest/{draft.id}/$activate",
                None,
                {**headers, "If-Match": 'W/"1"'},
            )
            return expect(status, 200, data)

        return op

    def legacy_create(self, i: int) -> Operation:
        http = self.client()
        pool = self.cds_pool
        counter = self._shared_counter

        def op() -> tuple[bool, str, str | None]:
            n = next(counter)
            pid, eid = pool[n % len(pool)]  # wraps only if the pool ran out (noted)
            body = seeding.legacy_medication(pid, eid, f"bench-{uuid.uuid4().hex}")
            status, _h, data = http.request(
                "POST", "/api/v1/orders", orjson.dumps(body), self.json_headers
            )
            return expect(status, 201, data)

        return op

    # -- pools ------------------------------------------------------------------------
    def prepare(self, phase: str) -> None:
        self._shared_counter = itertools.count()
        started = time.perf_counter()
        if phase == "put":
            n = self.args.clients * PUT_DRAFTS_PER_CLIENT
            made = self.seeder.drafts(n, "PUT")
            self.put_pool = [
                made[k * PUT_DRAFTS_PER_CLIENT : (k + 1) * PUT_DRAFTS_PER_CLIENT]
                for k in range(self.args.clients)
            ]
            what = f"{n} drafts ({PUT_DRAFTS_PER_CLIENT} per client)"
        elif phase == "activate":
            n = self.pool_size()
            self.activate_pool = self.seeder.drafts(n, "ACT")
            what = f"{n} fresh draft lab orders"
        elif phase == "legacy-create":
            n = self.pool_size(1.3)  # if it runs out it wraps (duplicate-order alerts then)
            self.cds_pool = self.seeder.cds_patients(n)
            what = f"{n} patients with an allergy and 3 active medications"
        else:
            return
        vacuum_analyze(self.dsn)  # fresh statistics, as a live database would have
        self.pool_notes[phase] = what
        print(f"  pool for {phase}: {what}, seeded in {time.perf_counter() - started:.1f}s")

    def factory(self, phase: str) -> Callable[[int], Operation]:
        return {
            "get": self.get,
            "search": self.search,
            "legacy-list": self.legacy_list,
            "post": self.post,
            "put": self.put,
            "activate": self.activate,
            "legacy-create": self.legacy_create,
        }[phase]
