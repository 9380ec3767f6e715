"""Issue 11, item 21: SIGTERM drains before the server stops, under both servers of
`orders-service serve` (gunicorn and granian, issue 13).

A real `orders-service serve` process (its own port, SQLite, development mode) gets SIGTERM
from this test. During the drain every request is still answered, each with
`Connection: close` (on a kept-alive connection and on a new one), `/readyz` says 503
`draining` so a load balancer stops routing, and the server then exits cleanly. A request
still arriving when the graceful stop begins is answered before the server exits.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DRAIN_SECONDS = 2.0
#: The server process, its port, its environment.
Server = tuple[subprocess.Popen[bytes], int, dict[str, str]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("orders-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


@pytest.fixture(params=["gunicorn", "granian"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "REDIS_"))}
    env |= {
        "ORDERS_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'orders.db'}",
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "AUDIT_FLUSH_SECONDS": "60",  # the audit buffer is written at exit, not before
    }
    subprocess.run([*_cli(), "migrate"], env=env, check=True, capture_output=True)
    port = _free_port()
    cmd = [*_cli(), "serve", "--dev", "--server", request.param, "--port", str(port)]
    cmd += ["--workers", "1", "--threads", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:  # a worker answers (and has its SIGTERM handler), not only the socket
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    _get(probe, "/healthz")
                finally:
                    probe.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the server did not start")
                time.sleep(0.1)
        yield proc, port, env
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _get(conn: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    return _get_with(conn, path, {})


def _get_with(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> http.client.HTTPResponse:
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp


def test_sigterm_drains_then_stops(server: Server) -> None:
    proc, port, _env = server
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first = _get(kept, "/healthz")
    assert first.status == 200
    assert first.getheader("Connection") != "close"  # a kept-alive connection

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    # A request on the kept-alive connection is answered, and the connection closed.
    again = _get(kept, "/fhir/R4/metadata")
    assert again.status == 200
    assert again.getheader("Connection") == "close"
    # A new connection is still served, and told the node is leaving.
    fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ready = _get(fresh, "/readyz")
    assert ready.status == 503
    assert ready.getheader("Connection") == "close"
    alive = _get(http.client.HTTPConnection("127.0.0.1", port, timeout=10), "/healthz")
    assert alive.status == 200

    started = time.monotonic()
    assert proc.wait(timeout=DRAIN_SECONDS + 15) == 0
    assert time.monotonic() - started < DRAIN_SECONDS + 10


def test_a_request_in_flight_when_the_stop_begins_is_answered(
    server: Server,
) -> None:
    """A request whose body is still arriving when the drain ends (the FHIR face reads the
    body first) is answered once it is complete; only then does the server exit."""
    proc, port, _env = server
    body = b'{"resourceType": "ServiceRequest"}'
    head = (
        f"POST /fhir/R4/ServiceRequest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    pending = socket.create_connection(("127.0.0.1", port), timeout=10)
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


def test_a_stopping_worker_writes_its_buffered_read_audit_events(
    server: Server, tmp_path: Path
) -> None:
    """Read AuditEvents wait in a per-worker buffer (docs/operations.md "Loss window"); a
    worker that stops on SIGTERM writes them before it exits, under either server."""
    proc, port, env = server
    token = subprocess.run(
        [*_cli(), "token", "--role", "ADMIN", "--role", "CLINICIAN", "--tenant", "t1"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": "t1"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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
    read = _get_with(conn, f"/fhir/R4/Patient/{pid}", headers)
    conn.close()
    assert read.status == 200

    def audit_events() -> int:
        with contextlib.closing(sqlite3.connect(tmp_path / "orders.db")) as db:
            count: int = db.execute("SELECT count(*) FROM audit_events").fetchone()[0]
        return count

    written = audit_events()  # the create's, written with it; the read's is buffered
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DRAIN_SECONDS + 15) == 0
    assert audit_events() == written + 1
