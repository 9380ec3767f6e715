"""The `events` phase: order create+activate throughput without and with one active
subscription, and the delivery lag from commit to receipt (docs/events.md).

Each operation POSTs a draft lab order (its own code, so decision support finds no
duplicate) and `$activate`s it; an ADMIN subscription to `order-activated` with a rest-hook
to a receiver on loopback, served by one `orders-service worker` process. Windows of three
kinds alternate (see `run`); the lag is the receiver's arrival time minus the event's
`timestamp` (when the order was written, just before its commit; same machine clock).
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from app.services.outbox import INDEX_SECONDS
from benchmarks.load import HttpClient, Monitor, Operation, PhaseResult, expect, run_phase
from benchmarks.roundtrips import Counter_
from benchmarks.server import ROOT, _console_script

FHIR = "/fhir/R4"
BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


class Receiver:
    """Records (event number, arrival time, event timestamp) of every notification."""

    def __init__(self) -> None:
        self.events: dict[int, tuple[float, str]] = {}
        self.lock = threading.Lock()
        outer = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                params = json.loads(body)["entry"][0]["resource"]["parameter"]
                with outer.lock:
                    for p in params:
                        if p["name"] == "notification-event":
                            parts = {q["name"]: q for q in p["part"]}
                            number = int(parts["event-number"]["valueString"])
                            outer.events.setdefault(
                                number, (now, parts["timestamp"]["valueInstant"])
                            )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lags_ms(self, spans: list[tuple[float, float]]) -> list[float]:
        """Receipt minus event time, for events written inside one of `spans`."""
        out = []
        with self.lock:
            for arrived, ts in self.events.values():
                at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                if any(lo <= at <= hi for lo, hi in spans):
                    out.append(1000.0 * (arrived - at))
        return sorted(out)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, round(p / 100.0 * len(values) + 0.5) - 1))]


class EventsPhase:
    def __init__(self, port: int, tenant: str, patient: str, clinician: str, admin: str) -> None:
        self.port, self.tenant, self.patient = port, tenant, patient
        self.doc = self._headers(clinician)
        self.admin = self._headers(admin)
        #: Set while counting round trips (benchmarks/roundtrips.py): an in-process app.
        self.client_override: Callable[[], Any] | None = None

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "X-Tenant-ID": self.tenant,
            "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json",
        }

    def create_activate(self, i: int) -> Operation:
        http = (
            self.client_override() if self.client_override else HttpClient("127.0.0.1", self.port)
        )

        def op() -> tuple[bool, str, str | None]:
            body = {
                "resourceType": "ServiceRequest",
                "status": "draft",
                "intent": "order",
                "category": [
                    {"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}
                ],
                "code": {"coding": [{"system": "urn:bench", "code": uuid.uuid4().hex}]},
                "subject": {"reference": f"Patient/{self.patient}"},
            }
            status, _h, data = http.request(
                "POST", f"{FHIR}/ServiceRequest", orjson.dumps(body), self.doc
            )
            if status != 201:
                return expect(status, 201, data)
            rid = orjson.loads(data)["id"]
            status, _h, data = http.request(
                "POST",
                f"{FHIR}/ServiceRequest/{rid}/$activate",
                None,
                {**self.doc, "If-Match": 'W/"1"'},
            )
            return expect(status, 200, data)

        return op

    def subscribe(self, endpoint: str) -> str:
        http = HttpClient("127.0.0.1", self.port)
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "benchmark",
            "criteria": "urn:orders-service:SubscriptionTopic/order-activated",
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": "application/fhir+json",
                "_payload": {
                    "extension": [{"url": BP + "backport-payload-content", "valueCode": "id-only"}]
                },
            },
        }
        status, _h, data = http.request(
            "POST", f"{FHIR}/Subscription", orjson.dumps(body), self.admin
        )
        if status != 201:
            raise RuntimeError(f"subscription create failed: {status} {data[:300]!r}")
        return str(orjson.loads(data)["id"])

    def status(self, sid: str) -> dict[str, str]:
        http = HttpClient("127.0.0.1", self.port)
        _status, _h, data = http.request(
            "GET", f"{FHIR}/Subscription/{sid}/$status", None, self.admin
        )
        params = orjson.loads(data)["entry"][0]["resource"]["parameter"]
        return {
            p["name"]: str(next(v for k, v in p.items() if k.startswith("value")))
            for p in params
            if p["name"] != "notification-event"
        }


def _set_status(phase: EventsPhase, sid: str, status: str) -> None:
    http = HttpClient("127.0.0.1", phase.port)
    path = f"{FHIR}/Subscription/{sid}"
    _s, _h, data = http.request("GET", path, None, phase.admin)
    body = {**orjson.loads(data), "status": status}
    code, _h, data = http.request("PUT", path, orjson.dumps(body), phase.admin)
    if code != 200:
        raise RuntimeError(f"subscription update failed: {code} {data[:300]!r}")
    deadline = time.time() + 30
    while status == "requested" and phase.status(sid)["status"] != "active":
        if time.time() > deadline:
            raise RuntimeError("the subscription never became active")
        time.sleep(0.1)


def _line(r: PhaseResult) -> str:
    """Throughput drifts with the machine; CPU per operation (server, PostgreSQL) much less."""
    other = r.metrics.get("other_cpu")
    noise = f", other CPU {other:.0f}%" if other is not None else ""
    srv, pg = r.server_ms_per_request, r.pg_ms_per_request
    cpu = f", server {srv:.1f} + PG {pg:.1f} CPU ms/op" if srv and pg else ""
    return (
        f"{r.name}: {r.rps:,.1f} ops/s (p50 {r.pct(50):.0f} ms, p99 {r.pct(99):.0f} ms, "
        f"errors {r.errors}{cpu}{noise})"
    )


def run(
    port: int,
    env: dict[str, str],
    log_dir: Path,
    *,
    tenant: str,
    patient: str,
    tokens: tuple[str, str],
    clients: int,
    warmup: float,
    duration: float,
    monitor_factory: Callable[[], Monitor],
    counter: Counter_ | None = None,
    rounds: int = 2,
) -> tuple[list[PhaseResult], list[str]]:
    """Three kinds of window, in `rounds` rounds (off, outbox, delivering; again…), because
    a shared machine's speed drifts and one pair would compare two different machines:

    - `off`: the subscription is `off` (or not yet created): the order path as before;
    - `outbox`: the subscription is active but the worker is paused (SIGSTOP): the cost of
      writing and numbering the events in the order's transaction, nothing else — what the
      issue's "<= 10% slower with the outbox" is about;
    - `delivering`: the worker runs: outbox plus delivery competing for the same 2 cores; the
      lag is measured over the events of these windows only (the backlog of the paused
      windows is drained before each starts).
    """
    phase = EventsPhase(port, tenant, patient, *tokens)

    def window(name: str) -> PhaseResult:
        return run_phase(
            name,
            clients,
            phase.create_activate,
            warmup=warmup,
            duration=duration,
            monitor=monitor_factory(),
        )

    receiver = Receiver()
    with (log_dir / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [*_console_script(), "worker", "--dev", "--poll", "0.05"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    results: dict[str, PhaseResult] = {}
    trips: dict[str, str] = {}
    spans: list[tuple[float, float]] = []

    def count(label: str) -> None:
        """Database round trips of one create+activate, replayed in process."""
        if counter is None:
            return
        phase.client_override = counter.client
        try:
            # The counting app is another process's view: it sees a subscription written
            # over HTTP within INDEX_SECONDS (app/services/outbox.py). Wait that long, and
            # warm its cache with one unmeasured operation: the steady state is counted.
            time.sleep(INDEX_SECONDS + 0.1)
            counter.measure(phase.create_activate(0))
            counts, outcome = counter.measure(phase.create_activate(0))
            trips[label] = f"{counts.round_trips} round trips ({counts.describe()})"
            if not outcome[0]:
                trips[label] += f" FAILED {outcome}"
        finally:
            phase.client_override = None

    def drained(sid: str) -> None:
        total = int(phase.status(sid)["events-since-subscription-start"])
        deadline = time.time() + 180
        while len(receiver.events) < total and time.time() < deadline:
            time.sleep(0.1)

    sid = ""
    try:
        for k in range(1, rounds + 1):
            results[f"events-off-{k}"] = window(f"events-off-{k}")
            if k == 1:
                count("no subscription")
                sid = phase.subscribe(receiver.url)
            _set_status(phase, sid, "requested")  # waits for the handshake
            if k == 1:
                count("one active subscription")
            worker.send_signal(signal.SIGSTOP)
            try:
                results[f"events-outbox-{k}"] = window(f"events-outbox-{k}")
            finally:
                worker.send_signal(signal.SIGCONT)
            drained(sid)
            began = time.time()
            results[f"events-delivering-{k}"] = window(f"events-delivering-{k}")
            spans.append((began, time.time()))
            drained(sid)
            if k < rounds:
                _set_status(phase, sid, "off")
        total = int(phase.status(sid)["events-since-subscription-start"])
        lags = receiver.lags_ms(spans)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        receiver.close()

    def mean(kind: str) -> float:
        return sum(results[f"events-{kind}-{k}"].rps for k in range(1, rounds + 1)) / rounds

    def paired(kind: str) -> str:
        """Each round's kind/off ratio (adjacent windows: the least drift), median."""
        ratios = sorted(
            results[f"events-{kind}-{k}"].rps / results[f"events-off-{k}"].rps
            for k in range(1, rounds + 1)
        )
        each = ", ".join(f"{100.0 * (1 - r):+.0f}%" for r in ratios)
        return f"median {100.0 * (1 - statistics.median(ratios)):+.1f}% slower (rounds: {each})"

    off, outbox, delivering = mean("off"), mean("outbox"), mean("delivering")
    lines = [_line(r) for r in results.values()]
    lines.append(
        f"mean create+activate: off {off:,.1f} ops/s; outbox (worker paused) {outbox:,.1f} "
        f"({100.0 * (1 - outbox / off):+.1f}% slower; target <= 10%); delivering "
        f"{delivering:,.1f} ({100.0 * (1 - delivering / off):+.1f}% slower)"
    )
    lines.append(f"paired by round: outbox {paired('outbox')}; delivering {paired('delivering')}")
    lines.append(
        f"delivery lag, event timestamp -> receipt, one worker, delivering windows: p50 "
        f"{_pct(lags, 50):.1f} ms, p99 {_pct(lags, 99):.1f} ms over {len(lags):,} events "
        f"({len(receiver.events):,} of {total:,} delivered in all)"
    )
    lines += [f"one create+activate, {k}: {v}" for k, v in trips.items()]
    return list(results.values()), lines
