"""Closed-loop load generation shared by every phase (HTTP and raw PostgreSQL alike).

N client threads each run one operation after another, as fast as the answers come (no
think time). A phase runs `warmup` seconds unmeasured, then a fixed window; a request counts
when it completes inside the window, and its latency is measured around that one request.
Server CPU (main process + workers), PostgreSQL CPU (every postgres process), the load
generator's own CPU and the workers' RSS are sampled over exactly the same window.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

#: One operation: returns (ok, label, detail); raises StopIteration when its pool is used up.
Operation = Callable[[], tuple[bool, str, str | None]]
#: Builds client number i's operation (and whatever connection it needs) in its own thread.
ClientFactory = Callable[[int], Operation]


# ---------------------------------------------------------------------- HTTP client
class HttpClient:
    """One keep-alive HTTP/1.1 connection (http.client: the lightest client in the stdlib,
    so the load generator steals as little CPU from the server as possible)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, resp.headers, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def expect(status: int, wanted: int, data: bytes) -> tuple[bool, str, str | None]:
    if status == wanted:
        return True, str(status), None
    return False, str(status), data[:300].decode("utf-8", "replace")


# ---------------------------------------------------------------------- monitoring
def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class Monitor:
    """CPU time of the server tree, of PostgreSQL and of this process; workers' peak RSS."""

    def __init__(self, server_pid: int | list[int] | None, database: str) -> None:
        # Several masters when the app tier is scaled out (`--servers N`): one tree each.
        pids = server_pid if isinstance(server_pid, list) else [server_pid] if server_pid else []
        self.masters = [psutil.Process(pid) for pid in pids]
        self.server = self.masters[0] if self.masters else None
        self.database = database
        self.me = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._peak_rss = 0
        self._rss_begin = 0
        self._thread: threading.Thread | None = None
        self._start: dict[str, Any] = {}

    def workers(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for master in self.masters:
            with contextlib.suppress(psutil.Error):
                out.extend(master.children(recursive=True))
        return out

    def _server_cpu(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for proc in [*self.masters, *self.workers()]:
            with contextlib.suppress(psutil.Error):
                out[proc.pid] = _cpu_seconds(proc)
        return out

    def _pg_cpu(self) -> dict[int, float]:
        """PostgreSQL's shared processes (postmaster, WAL writer, checkpointer, …) and the
        backends of the benchmark database; backends of other databases are someone else's."""
        out: dict[int, float] = {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                name = proc.info["name"] or ""
                if not (name.startswith("postgres") or name.startswith("postmaster")):
                    continue
                title = " ".join(proc.info["cmdline"] or []).split()
                # A backend's title: "postgres: 15/main: <user> <database> <host(port)> …"
                is_backend = len(title) >= 5 and ("(" in title[4] or title[4] == "[local]")
                if is_backend and title[3] != self.database:
                    continue
                out[proc.pid] = _cpu_seconds(proc)
            except psutil.Error:
                pass
        return out

    def worker_rss(self) -> list[int]:
        out = []
        for proc in self.workers():
            with contextlib.suppress(psutil.Error):
                out.append(proc.memory_info().rss)
        return out

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.2):
            rss = self.worker_rss()
            if rss:
                self._peak_rss = max(self._peak_rss, max(rss))

    def begin(self) -> None:
        self._peak_rss = max(self.worker_rss(), default=0)
        self._rss_begin = sum(self.worker_rss())
        self._start = {
            "t": time.perf_counter(),
            "server": self._server_cpu(),
            "pg": self._pg_cpu(),
            "me": _cpu_seconds(self.me),
            "machine": psutil.cpu_times(),
        }
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_rss, daemon=True)
        self._thread.start()

    def end(self) -> dict[str, float | None]:
        elapsed = time.perf_counter() - self._start["t"]
        server, pg, me = self._server_cpu(), self._pg_cpu(), _cpu_seconds(self.me)
        machine = psutil.cpu_times()
        rss_end = sum(self.worker_rss())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

        def delta(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items())

        before = self._start["machine"]
        idle = (machine.idle - before.idle) + (
            getattr(machine, "iowait", 0.0) - getattr(before, "iowait", 0.0)
        )
        busy_seconds = max(0.0, sum(machine) - sum(before) - idle)
        server_s = delta(self._start["server"], server) if self.server else 0.0
        pg_s = delta(self._start["pg"], pg)
        me_s = me - self._start["me"]
        return {
            "machine_busy": 100.0 * busy_seconds / elapsed,
            # Everything else on the machine (other users' jobs, the kernel's own threads):
            # when this is large, the absolute numbers of the window are not trustworthy.
            "other_cpu": 100.0 * max(0.0, busy_seconds - server_s - pg_s - me_s) / elapsed,
            "server_cpu": (
                100.0 * delta(self._start["server"], server) / elapsed if self.server else None
            ),
            "server_cpu_seconds": delta(self._start["server"], server) if self.server else None,
            "pg_cpu": 100.0 * delta(self._start["pg"], pg) / elapsed,
            "pg_cpu_seconds": delta(self._start["pg"], pg),
            "client_cpu": 100.0 * (me - self._start["me"]) / elapsed,
            "peak_rss_mb": self._peak_rss / 2**20 if self.server else None,
            # All workers together, at the window's start and end (growth within a phase).
            "rss_begin_mb": self._rss_begin / 2**20 if self.server else None,
            "rss_end_mb": rss_end / 2**20 if self.server else None,
        }


# ---------------------------------------------------------------------- phases
@dataclass
class PhaseResult:
    name: str
    clients: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    statuses: Counter[str]
    error_samples: list[str]
    metrics: dict[str, float | None] = field(default_factory=dict)
    exhausted: bool = False
    note: str = ""

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
        return ordered[rank]

    @property
    def server_ms_per_request(self) -> float | None:
        secs = self.metrics.get("server_cpu_seconds")
        if secs is None or not self.requests:
            return None
        return 1000.0 * secs / self.requests

    @property
    def pg_ms_per_request(self) -> float | None:
        secs = self.metrics.get("pg_cpu_seconds")
        if secs is None or not self.requests:
            return None
        return 1000.0 * secs / self.requests

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "clients": self.clients,
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.pct(50), 2),
            "p95_ms": round(self.pct(95), 2),
            "p99_ms": round(self.pct(99), 2),
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "exhausted": self.exhausted,
            "server_ms_per_request": self.server_ms_per_request,
            "pg_ms_per_request": self.pg_ms_per_request,
            **self.metrics,
        }


def run_phase(
    name: str,
    clients: int,
    factory: ClientFactory,
    *,
    warmup: float,
    duration: float,
    monitor: Monitor,
    on_window: Callable[[bool], None] | None = None,
) -> PhaseResult:
    """Run `clients` threads of `factory`'s operation: `warmup` s, then a `duration` s window.

    `on_window(True)` is called when the window opens and `on_window(False)` when it closes
    (the profiler hooks in there).
    """
    stop = threading.Event()
    ready = threading.Barrier(clients + 1)
    bounds = {"start": float("inf"), "end": float("inf")}
    per_thread: list[list[tuple[float, float, bool, str, str | None]]] = [
        [] for _ in range(clients)
    ]
    exhausted = threading.Event()
    failures: list[BaseException] = []

    def client(i: int) -> None:
        try:
            op = factory(i)
        except BaseException as exc:  # setup failure: report, do not hang the barrier
            failures.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        out = per_thread[i]
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                ok, label, detail = op()
            except StopIteration:
                exhausted.set()
                return
            except Exception as exc:
                ok, label, detail = False, type(exc).__name__, str(exc)[:300]
            t1 = time.perf_counter()
            if bounds["start"] <= t1 <= bounds["end"]:
                out.append((t1, (t1 - t0) * 1000.0, ok, label, detail))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        stop.set()
        raise RuntimeError(f"phase {name}: a client failed to start: {failures!r}") from (
            failures[0] if failures else None
        )
    try:
        begun = time.perf_counter()
        time.sleep(max(0.0, begun + warmup - time.perf_counter()))
        bounds["start"] = time.perf_counter()
        monitor.begin()
        if on_window:
            on_window(True)
        bounds["end"] = bounds["start"] + duration
        time.sleep(max(0.0, bounds["end"] - time.perf_counter()))
        metrics = monitor.end()
        if on_window:
            on_window(False)
    finally:  # Ctrl-C included: the clients stop before anyone stops the server
        stop.set()
        for t in threads:
            t.join(timeout=60)

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    errors = 0
    for rows in per_thread:
        for _t1, ms, ok, label, detail in rows:
            latencies.append(ms)
            statuses[label] += 1
            if not ok:
                errors += 1
                if detail and len(samples) < 5:
                    samples.append(f"{label}: {detail}")
    return PhaseResult(
        name=name,
        clients=clients,
        seconds=duration,
        latencies_ms=latencies,
        errors=errors,
        statuses=statuses,
        error_samples=samples,
        metrics=metrics,
        exhausted=exhausted.is_set(),
    )
