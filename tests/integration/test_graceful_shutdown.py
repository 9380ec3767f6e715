"""Issue 11, item 21: SIGTERM drains before the server stops, under both servers of
`orders-service serve` (granian and gunicorn, issue 13).

A real `orders-service serve` process (tests/served.py) gets SIGTERM from this test. During
the drain every request is still answered, each with `Connection: close` (on a kept-alive
connection and on a new one), `/readyz` says 503 `draining` so a load balancer stops
routing, and the server then exits cleanly. A request still arriving when the graceful stop
begins is answered before the server exits, and buffered read AuditEvents are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from tests.served import DRAIN_SECONDS, Served, children, get


def test_sigterm_drains_then_stops(served: Served) -> None:
    proc = served.proc
    kept = served.connection()
    first = get(kept, "/healthz")
    assert first.status == 200
    assert first.getheader("Connection") != "close"  # a kept-alive connection

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    # A request on the kept-alive connection is answered, and the connection closed.
    again = get(kept, "/fhir/R4/metadata")
    assert again.status == 200
    assert again.getheader("Connection") == "close"
    # A new connection is still served, and told the node is leaving.
    ready = get(served.connection(), "/readyz")
    assert ready.status == 503
    assert ready.getheader("Connection") == "close"
    alive = get(served.connection(), "/healthz")
    assert alive.status == 200

    started = time.monotonic()
    assert proc.wait(timeout=DRAIN_SECONDS + 15) == 0
    assert time.monotonic() - started < DRAIN_SECONDS + 10


def test_a_request_in_flight_when_the_stop_begins_is_answered(served: Served) -> None:
    """A request whose body is still arriving when the drain ends (the FHIR face reads the
    body first) is answered once it is complete; only then does the server exit."""
    proc = served.proc
    body = b'{"resourceType": "ServiceRequest"}'
    head = (
        f"POST /fhir/R4/ServiceRequest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    pending = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    pending.sendall(head + body[:10])

    # Well past the drain: the graceful stop has begun, and waits for this request.
    time.sleep(max(0.0, signalled + DRAIN_SECONDS + 1.0 - time.monotonic()))
    assert proc.poll() is None
    pending.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing answered yet
        pending.recv(1)
    pending.setblocking(True)

    pending.sendall(body[10:])
    answer = b""
    while chunk := pending.recv(65536):  # until the server closes the connection
        answer += chunk
    pending.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b"\r\nconnection: close\r\n" in rest.lower()
    assert proc.wait(timeout=15) == 0


def test_a_stopping_worker_writes_its_buffered_read_audit_events(served: Served) -> None:
    """Read AuditEvents wait in a per-worker buffer (docs/operations.md "Loss window"); a
    worker that stops on SIGTERM writes them before it exits, under either server."""
    token = served.token("ADMIN", "CLINICIAN", tenant="t1")
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": "t1"}
    conn = served.connection()
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}], "birthDate": "1970-01-01"}
    conn.request(
        "POST",
        "/fhir/R4/Patient",
        body=json.dumps(patient),
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    created = conn.getresponse()
    assert created.status == 201, created.read()
    pid = json.loads(created.read())["id"]
    read = get(conn, f"/fhir/R4/Patient/{pid}", headers)
    conn.close()
    assert read.status == 200

    def audit_events() -> int:
        with contextlib.closing(sqlite3.connect(served.database)) as db:
            count: int = db.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        return count

    written = audit_events()  # the create's, written with it; the read's is buffered
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=DRAIN_SECONDS + 15) == 0
    assert audit_events() == written + 1


def test_workers_stop_when_the_main_process_dies(served: Served) -> None:
    """SIGKILL the main process: its workers do not serve on as orphans holding the port
    (gunicorn's notice the new parent pid; granian's watch for it, app/web/granian_server.py)."""
    workers = children(served.proc.pid)
    assert workers
    served.proc.kill()
    served.proc.wait(timeout=10)
    deadline = time.monotonic() + DRAIN_SECONDS + 15
    try:
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its main process"
            time.sleep(0.2)
    finally:
        for pid in workers:  # never left behind, even when this fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
