"""A real `orders-service serve` process for the tests that need one: its own port, SQLite in
the test's folder, development mode, one worker; under either server (granian, gunicorn),
so a test can hold both to the same behaviour (issue 13)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVERS = ("gunicorn", "granian")
DRAIN_SECONDS = 2.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    database: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def token(self, *roles: str, tenant: str) -> str:
        """A development token from the server's own signing key (`orders-service token`)."""
        args = [arg for role in roles for arg in ("--role", role)]
        return subprocess.run(
            [*cli(), "token", *args, "--tenant", tenant],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()


def cli() -> list[str]:
    script = Path(sys.executable).with_name("orders-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """GET `path` on `conn`, the body read (so the connection can be used again)."""
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    return resp


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc; no psutil in the test tools)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def serving(server: str, folder: Path) -> Iterator[Served]:
    """`serve --server <server>` until the block ends (then killed if still running).
    Read AuditEvents stay buffered (AUDIT_FLUSH_SECONDS 60) until the worker exits; the
    drain lasts DRAIN_SECONDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "REDIS_"))}
    database = folder / "orders.db"
    env |= {
        "ORDERS_INSTANCE_PATH": str(folder),
        "DATABASE_URL": f"sqlite:///{database}",
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "AUDIT_FLUSH_SECONDS": "60",
    }
    subprocess.run([*cli(), "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    cmd = [*cli(), "serve", "--dev", "--server", server, "--port", str(port)]
    cmd += ["--workers", "1", "--threads", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = Served(proc, port, env, database)
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = served.connection()
            try:  # a worker answers (and has its SIGTERM handler), not only the socket
                get(probe, "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"{server} did not start")
                time.sleep(0.1)
            finally:
                probe.close()
        yield served
    finally:
        workers = children(proc.pid)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for worker in workers:  # not left to find out by themselves that the parent is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
