"""The `events` phase: order create+activate throughput without and with one active
subscription, and the delivery lag from commit to receipt (docs/events.md).

1. `create+activate` with no subscription: each operation POSTs a draft lab order (its own
   code, so decision support finds no duplicate) and `$activate`s it;
2. an ADMIN subscribes to `order-activated` with a rest-hook to a local receiver on loopback,
   one `orders-service worker` process starts, and the handshake makes it active;
3. the same load again: every activation now writes an outbox event (and increments the
   subscription's counter under its row lock) in its transaction;
4. the receiver's arrival time minus the event's `timestamp` (when the order was written,
   just before its commit; same machine clock) is the lag; p50/p99 over every event of the
   window, after the worker has caught up.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import HttpClient, Monitor, Operation, PhaseResult, expect, run_phase
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

    def lags_ms(self) -> list[float]:
        from datetime import datetime

        with self.lock:
            return sorted(
                1000.0 * (arrived - datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
                for arrived, ts in self.events.values()
            )

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

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "X-Tenant-ID": self.tenant,
            "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json",
        }

    def create_activate(self, i: int) -> Operation:
        http = HttpClient("127.0.0.1", self.port)

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
    other = r.metrics.get("other_cpu")
    noise = f", other CPU {other:.0f}%" if other is not None else ""
    return (
        f"{r.name}: {r.rps:,.1f} ops/s (p50 {r.pct(50):.0f} ms, p99 {r.pct(99):.0f} ms, "
        f"errors {r.errors}{noise})"
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
) -> tuple[list[PhaseResult], list[str]]:
    """Windows alternate off, on, off, on (the subscription set `off` and back to
    `requested` between them): a shared machine's speed drifts, so one pair would compare
    two different machines."""
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
    worker = subprocess.Popen(
        [*_console_script(), "worker", "--poll", "0.05"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(log_dir / "worker.log").open("ab"),
    )
    results: list[PhaseResult] = []
    try:
        results.append(window("events-off-1"))
        sid = phase.subscribe(receiver.url)
        _set_status(phase, sid, "requested")  # waits for the handshake
        results.append(window("events-on-1"))
        _set_status(phase, sid, "off")
        results.append(window("events-off-2"))
        _set_status(phase, sid, "requested")
        results.append(window("events-on-2"))
        total = int(phase.status(sid)["events-since-subscription-start"])
        deadline = time.time() + 120
        while len(receiver.events) < total and time.time() < deadline:
            time.sleep(0.1)
        lags = receiver.lags_ms()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        receiver.close()
    off = sum(r.rps for r in results[0::2]) / 2
    on = sum(r.rps for r in results[1::2]) / 2
    slower = 100.0 * (1 - on / off) if off else float("nan")
    lines = [_line(r) for r in results]
    lines.append(
        f"mean without {off:,.1f} ops/s, with {on:,.1f} ops/s: {slower:+.1f}% slower with the "
        "outbox (target <= 10%)"
    )
    lines.append(
        f"delivery lag, event timestamp -> receipt, one worker: p50 {_pct(lags, 50):.1f} ms, "
        f"p99 {_pct(lags, 99):.1f} ms over {len(lags):,} of {total:,} events (warm-ups included)"
    )
    return results, lines
