"""The production stack under test: `orders-service serve` (the build's default server,
granian or gunicorn, unless `serve_args` names one) as a subprocess.

The server runs in its own session (process group), so a Ctrl-C in the terminal reaches only
the benchmark, whose `finally` stops the server: SIGTERM to its main process (graceful: the
drain, then the stop), then SIGKILL to the group it leads if it has not exited in time.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent


def _console_script() -> list[str]:
    """`orders-service` next to this interpreter (the venv), else the module entry point."""
    script = Path(sys.executable).parent / "orders-service"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from app.cli import main; main()"]


def fresh_database(pg: str, name: str, *, async_commit: bool = False) -> None:
    """Drop and create the benchmark's own database (never another one: the name is ours).
    `async_commit`: its sessions do not wait for the WAL flush (`--async-commit`)."""
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        if async_commit:
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    args: list[str], env: dict[str, str], *, script: list[str] | None = None, cwd: Path = ROOT
) -> str:
    """Run an `orders-service` command (e.g. migrate) to completion; fail loudly. `script`
    and `cwd` name another build's CLI (the A/B baseline); its output is returned."""
    proc = subprocess.run(
        [*(script or _console_script()), *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"orders-service {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def serve_flags(script: list[str], env: dict[str, str], cwd: Path = ROOT) -> list[str]:
    """Flags this build's `serve` needs for the benchmark: `--dev` (development tokens on
    loopback: the benchmark mints its own) where `serve` refuses development mode without
    it; nothing on builds from before that flag (an A/B baseline)."""
    return ["--dev"] if "--dev" in run_cli(["serve", "--help"], env, script=script, cwd=cwd) else []


class Server:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        workers: int,
        threads: int,
        port: int,
        script: list[str] | None = None,
        cwd: Path = ROOT,
        extra: list[str] | None = None,
        serve_args: list[str] | None = None,
    ) -> None:
        self.script = script or _console_script()
        self.cwd = cwd
        self.extra = extra if extra is not None else serve_flags(self.script, env, cwd)
        self.extra += serve_args or []
        self.env = env
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0) -> None:
        cmd = [
            *self.script,
            "serve",
            *self.extra,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode}; log:\n{self.log_tail()}"
                )
            if self._ready() and len(self.worker_pids()) >= self.workers:
                return
            time.sleep(0.25)
        raise RuntimeError(f"the server was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
            return status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children()]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group this server leads
            proc.wait(timeout=10)
