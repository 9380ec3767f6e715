"""What the access audit trail costs reads (issue 15: reads at most 10% slower with it on).

Two servers run at the same time on the same database and data: one with `AUDIT_TRAIL=off`,
one with it on. Each read phase alternates short windows between them, A B B A
(benchmarks/paired.py `abba_order`), `--audit-rounds` pairs of `WINDOW` s windows (after
`WARMUP` s unmeasured each); each pair is two adjacent windows, a few seconds apart, so both
see nearly the same machine. Per pair: on/off of req/s and of CPU per request; per phase: the
median of those ratios with a distribution-free interval, and one verdict (`paired.verdict`:
the median CPU-per-request ratio at most 1.10).

What "CPU per request" counts (`ServerMonitor`): the server's process tree (main process
and workers; the trail's flusher is a daemon thread in each worker, so its CPU is the
workers') plus the PostgreSQL backends serving *that server's* connections (found by their
client ports; the flusher's `COPY` runs in one of them). Not counted: the cluster's shared
processes (WAL writer, checkpointer, background writer), which serve every database on this
PostgreSQL, other people's included.

Each server's clients use a token of their own (`bench-audit-off`, `bench-audit-on`), so the
AuditEvents written during a phase are counted per server: the trail-on server must have
written at least one per read it served in its windows, the trail-off server none; otherwise
the verdict is MISSED and the run fails (a comparison that silently measured nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg

from benchmarks import paired
from benchmarks.load import Monitor, Operation, PhaseResult, run_phase
from benchmarks.server import Server, free_port

READ_PHASES = ("get", "search", "legacy-list")
TARGET = 0.10
#: Seconds per measured window, and unmeasured before it. Short windows make many pairs in
#: little time; the warm-up is longer than the flusher's 1 s period, so a window's events
#: are flushed in steady state (and the previous window's tail is written before it opens).
WINDOW = 2.5
WARMUP = 1.2
#: The token subject of each server's clients: the AuditEvents' `agent` column.
AGENTS = {paired.OFF: "bench-audit-off", paired.ON: "bench-audit-on"}
#: Each side's `AUDIT_TRAIL`. An A/A check of the method itself (both "off": the paired
#: CPU ratios should centre on 1.0, and the event check then fails, as it should) sets both
#: the same from a script; docs/performance.md reports one.
TRAIL = {paired.OFF: "off", paired.ON: "on"}


class ServerMonitor(Monitor):
    """`Monitor` whose PostgreSQL CPU is only the backends connected from this server's
    processes (by client port), so two servers on one database are told apart and the
    cluster's shared processes (other people's load) stay out."""

    def __init__(self, server_pid: int, database: str, pg_port: int) -> None:
        super().__init__(server_pid, database)
        self.pg_port = pg_port

    def _client_ports(self) -> set[int]:
        ports: set[int] = set()
        for proc in [*self.masters, *self.workers()]:
            with contextlib.suppress(psutil.Error):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == self.pg_port:
                        ports.add(conn.laddr.port)
        return ports

    def _pg_cpu(self) -> dict[int, float]:
        ports = self._client_ports()
        out: dict[int, float] = {}
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                title = " ".join(proc.info["cmdline"] or []).split()
                # A backend's title: "postgres: 15/main: <user> <database> <host(port)> …"
                if (
                    len(title) < 5
                    or not title[0].startswith("postgres")
                    or title[3] != self.database
                ):
                    continue
                _host, _, port = title[4].rstrip(")").partition("(")
                if port.isdigit() and int(port) in ports:
                    out[proc.pid] = float(sum(proc.cpu_times()[:2]))
            except psutil.Error:
                pass
        return out


def cpu_ms(result: PhaseResult) -> float | None:
    """Server plus its own PostgreSQL backends' CPU per request, in ms."""
    app, pg = result.server_ms_per_request, result.pg_ms_per_request
    return None if app is None or pg is None else app + pg


def audit_events(dsn: str) -> dict[str, int]:
    """AuditEvents stored so far per benchmark agent."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT agent, count(*) FROM audit_events WHERE agent = ANY(%s) GROUP BY agent",
            (list(AGENTS.values()),),
        ).fetchall()
    counts = {agent: int(n) for agent, n in rows}
    return {mode: counts.get(agent, 0) for mode, agent in AGENTS.items()}


def settled_events(dsn: str, timeout: float = 20.0) -> dict[str, int]:
    """The counts once the trail-on server's flusher has written its buffer (the count stops
    changing over more than one flush period)."""
    last, stable_since = audit_events(dsn), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = audit_events(dsn)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 2.5:
            break
    return last


@dataclass
class Comparison:
    """One read phase: its windows, the paired statistics and the verdict."""

    phase: str
    windows: list[tuple[int, str, PhaseResult]] = field(default_factory=list)
    #: AuditEvents written during the pairs, and successful reads served, per mode.
    events: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    rps: paired.Summary | None = None
    cpu: paired.Summary | None = None
    met: bool = False
    reason: str = ""

    def side(self, mode: str) -> list[PhaseResult]:
        """This mode's windows in pair order."""
        return [r for _k, m, r in sorted(self.windows, key=lambda w: w[0]) if m == mode]

    @property
    def errors(self) -> int:
        return sum(r.errors for _k, _m, r in self.windows)

    def decide(self) -> None:
        off, on = self.side(paired.OFF), self.side(paired.ON)
        self.rps = paired.Summary.of(
            paired.paired_ratios([r.rps for r in off], [r.rps for r in on])
        )
        self.cpu = paired.Summary.of(
            paired.paired_ratios([cpu_ms(r) for r in off], [cpu_ms(r) for r in on])
        )
        self.met, self.reason = paired.verdict(
            self.cpu,
            target=TARGET,
            errors=self.errors,
            events_written=self.events.get(paired.ON, 0),
            events_expected=self.served.get(paired.ON, 0),
            events_off=self.events.get(paired.OFF, 0),
        )

    @property
    def measured(self) -> bool:
        """False when the trail-on side wrote fewer events than reads (or the off side any):
        the comparison did not measure the trail, and the run must fail."""
        served = self.served.get(paired.ON, 0)
        return (
            served > 0
            and self.events.get(paired.ON, 0) >= served
            and not self.events.get(paired.OFF, 0)
        )

    def pair_line(self, k: int) -> str:
        both = {m: r for j, m, r in self.windows if j == k}
        off, on = both[paired.OFF], both[paired.ON]
        a, b = cpu_ms(off), cpu_ms(on)
        cpu = _pct(b / a) if a and b else "-"
        rps = _pct(on.rps / off.rps) if off.rps else "-"
        other = max(r.metrics.get("other_cpu") or 0.0 for r in (off, on))
        return (
            f"{self.phase:<12} pair {k + 1:>2}: off {off.rps:7,.0f} req/s {_ms(a)} ms, "
            f"on {on.rps:7,.0f} req/s {_ms(b)} ms; req/s {rps}, CPU/req {cpu}; "
            f"other CPU {other:.0f}%"
        )

    def _split(self, mode: str) -> str:
        """Median server and PostgreSQL CPU ms per request of a side."""
        srv = self.median_of(mode, lambda r: r.server_ms_per_request)
        pg = self.median_of(mode, lambda r: r.pg_ms_per_request)
        return f"{srv:.2f} server + {pg:.2f} PG"

    def summary_line(self) -> str:
        return (
            f"req/s {self.rps.describe() if self.rps else '-'}, CPU/request "
            f"{self.cpu.describe() if self.cpu else '-'} over {len(self.windows) // 2} pairs; "
            f"AuditEvents written on/off {self.events.get(paired.ON, 0)}/"
            f"{self.events.get(paired.OFF, 0)} for {self.served.get(paired.ON, 0)} reads served "
            f"by the trail-on server; CPU ms/request off {self._split(paired.OFF)}, on "
            f"{self._split(paired.ON)}; {'met' if self.met else 'MISSED'} ({self.reason})"
        )

    def median_of(self, mode: str, metric: Callable[[PhaseResult], float | None]) -> float:
        values = [v for v in (metric(r) for r in self.side(mode)) if v is not None]
        return paired.median(values) if values else float("nan")


class Tally:
    """Successful operations, across client threads: the reads a server served."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def counting(self, factory: Callable[[int], Operation]) -> Callable[[int], Operation]:
        def make(i: int) -> Operation:
            op = factory(i)

            def counted() -> tuple[bool, str, str | None]:
                outcome = op()
                if outcome[0]:
                    with self._lock:
                        self.count += 1
                return outcome

            return counted

        return make


def compare(
    args: argparse.Namespace,
    env: dict[str, str],
    log_dir: Path,
    make_bench: Callable[[int, str], Any],
    dsn: str,
) -> list[Comparison]:
    """Both servers up, then per read phase `args.audit_rounds` A B B A pairs of windows.

    `make_bench(port, sub)` returns a `Bench` (benchmarks/phases.py) aimed at `port` whose
    clients carry a token with subject `sub`."""
    phases = [p for p in READ_PHASES if p in args.phase_list]
    pg_port = urlsplit(args.pg).port or 5432
    servers: dict[str, Server] = {}
    out: list[Comparison] = []
    try:
        for mode in (paired.OFF, paired.ON):
            server = Server(
                {**env, "AUDIT_TRAIL": TRAIL[mode]},
                log_dir / f"server-audit-{mode}.log",
                workers=args.workers,
                threads=args.threads,
                port=free_port(),
            )
            server.start()
            servers[mode] = server
        benches = {mode: make_bench(s.port, AGENTS[mode]) for mode, s in servers.items()}
        monitors = {
            mode: ServerMonitor(s.pid or 0, args.database, pg_port) for mode, s in servers.items()
        }
        for phase in phases:
            comparison = Comparison(phase)
            for mode in servers:  # connections, caches: neither side's first window is cold
                run_phase(
                    f"{phase} audit {mode} (priming)",
                    args.clients,
                    benches[mode].factory(phase),
                    warmup=WARMUP,
                    duration=1.0,
                    monitor=monitors[mode],
                )
            before = settled_events(dsn)
            tallies = {mode: Tally() for mode in servers}
            for k, mode in paired.abba_order(args.audit_rounds):
                result = run_phase(
                    f"{phase} audit {mode} {k + 1}",
                    args.clients,
                    tallies[mode].counting(benches[mode].factory(phase)),
                    warmup=WARMUP,
                    duration=WINDOW,
                    monitor=monitors[mode],
                )
                comparison.windows.append((k, mode, result))
                if len(comparison.windows) % 2 == 0:
                    print("  " + comparison.pair_line(k))
            after = settled_events(dsn)
            comparison.events = {mode: after[mode] - before[mode] for mode in servers}
            comparison.served = {mode: t.count for mode, t in tallies.items()}
            comparison.decide()
            out.append(comparison)
            print(f"  {phase}: {comparison.summary_line()}")
            for sample in [s for _k, _m, r in comparison.windows for s in r.error_samples][:3]:
                print(f"      error: {sample}")
    finally:
        for mode, server in servers.items():
            if any(r.errors for c in out for _k, m, r in c.windows if m == mode):
                print(f"audit {mode} server log (tail):\n" + server.log_tail(15))
            server.stop()
    return out


def _pct(x: float) -> str:
    return f"{100 * (x - 1):+.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def report(comparisons: list[Comparison], rounds: int) -> tuple[str, list[dict[str, Any]]]:
    lines = [
        "Cost of the access audit trail on reads: a trail-off and a trail-on server up together "
        f"on one database; per phase {rounds} pairs of adjacent {WINDOW:g} s windows (A B B A, "
        f"{WARMUP:g} s warm-up each).",
        "Change = median over the pairs of on/off [interval of the median, coverage shown]; "
        "CPU = server processes (flusher thread included) + that server's PostgreSQL "
        "backends (its COPY included), per request.",
        f"  {'phase':<12}{'off req/s':>10}{'on req/s':>9}  {'req/s change':<24}"
        f"{'CPU off':>8}{'CPU on':>7}  {'CPU/request change':<24}{'events/read':>12}  verdict",
    ]
    checks: list[dict[str, Any]] = []
    for c in comparisons:
        rps = c.rps.describe() if c.rps else "-"
        cpu = c.cpu.describe() if c.cpu else "-"
        served = c.served.get(paired.ON, 0)
        per_read = c.events.get(paired.ON, 0) / served if served else float("nan")
        lines.append(
            f"  {c.phase:<12}{c.median_of(paired.OFF, lambda r: r.rps):>10,.0f}"
            f"{c.median_of(paired.ON, lambda r: r.rps):>9,.0f}  {rps:<24}"
            f"{c.median_of(paired.OFF, cpu_ms):>8.2f}{c.median_of(paired.ON, cpu_ms):>7.2f}  "
            f"{cpu:<24}{per_read:>12.2f}  {'met' if c.met else 'MISSED'}"
        )
        checks.append(
            {
                "target": f"{c.phase}: audit on costs <= {100 * TARGET:.0f}% more CPU per read",
                "pairs": len(c.windows) // 2,
                "rps_ratio": c.rps.median if c.rps else None,
                "rps_ratio_interval": [c.rps.low, c.rps.high] if c.rps else None,
                "rps_ratios": list(c.rps.ratios) if c.rps else [],
                "cpu_ratio": c.cpu.median if c.cpu else None,
                "cpu_ratio_interval": [c.cpu.low, c.cpu.high] if c.cpu else None,
                "interval_coverage": c.cpu.coverage if c.cpu else None,
                "cpu_ratios": list(c.cpu.ratios) if c.cpu else [],
                "cpu_ms_off": c.median_of(paired.OFF, cpu_ms),
                "cpu_ms_on": c.median_of(paired.ON, cpu_ms),
                "pg_ms_off": c.median_of(paired.OFF, lambda r: r.pg_ms_per_request),
                "pg_ms_on": c.median_of(paired.ON, lambda r: r.pg_ms_per_request),
                "reads_served": c.served,
                "events_written": c.events,
                "other_cpu_max": max(
                    (r.metrics.get("other_cpu") or 0.0) for _k, _m, r in c.windows
                ),
                "met": c.met,
                "reason": c.reason,
            }
        )
    lines.append(
        f"  verdict: met when the median paired CPU/request ratio is <= {1 + TARGET:.2f} "
        "(CPU per request is what the trail adds to each read and moves least with other "
        "load; req/s is shown, not judged), with no errors, >= 1 AuditEvent written per read "
        "the trail-on server served and none by the trail-off server."
    )
    lines += [f"  {c.phase}: {c.reason}" for c in comparisons]
    return "\n".join(lines), checks


# ---------------------------------------------------------------------- the flusher alone
FLUSH_EVENTS = 2_000
FLUSH_ROUNDS = 5
#: Resources an event names: a GET's (one) and a page's (twenty).
FLUSH_SHAPES = {"get": 1, "search": 20, "legacy-list": 20}


def flush_cost(settings: Any, tenant: str, phases: list[str]) -> dict[str, tuple[float, float]]:
    """Worker CPU and wall milliseconds per buffered read event written by the trail's
    flusher (`AuditTrail.flush`), best of `FLUSH_ROUNDS` batches of `FLUSH_EVENTS`, for the
    event each read phase records.

    This is everything the trail does for a read besides noting what was read (`_records`),
    timed alone: `submit`, which makes each record its row on the request path, and the
    flush; a cross-check of the paired comparison from the other
    side (what one event costs, not what a read costs with and without). Wall time includes
    PostgreSQL's share (the flush waits for it)."""
    import dataclasses
    import os
    from datetime import UTC, datetime

    from app import create_app
    from app.auth import Principal
    from app.runtime import get_runtime
    from app.services.audit import AccessContext, AccessRecord
    from app.services.audit_trail import AuditTrail

    app = create_app(dataclasses.replace(settings, audit_enabled=False))
    with app.app_context():
        runtime = get_runtime()
    trail = AuditTrail(runtime.database, flush_seconds=60)
    trail._pid = os.getpid()  # no background thread: this function drives the flush
    who = Principal(
        "bench-flush", tenant, frozenset({"CLINICIAN"}), frozenset({tenant}), client_id="bench"
    )
    out: dict[str, tuple[float, float]] = {}
    try:
        for phase in phases:
            refs = FLUSH_SHAPES[phase]
            search = refs > 1
            ctx = AccessContext(
                face="fhir",
                sink=None,
                request_id="bench-request-id",
                client_address="127.0.0.1",
                interaction="search-type" if search else "read",
                resource_type="ServiceRequest",
                query="patient=p&status=active&_count=20" if search else None,
            )
            best_cpu = best_wall = float("inf")
            for _round in range(FLUSH_ROUNDS):
                now = datetime.now(UTC)
                records = [
                    AccessRecord(
                        tenant,
                        f"bench-patient-{i % 1000}",
                        who,
                        ctx,
                        "E" if search else "R",
                        "0",
                        now,
                        [f"ServiceRequest/sr-{i}-{k}/_history/1" for k in range(refs)],
                    )
                    for i in range(FLUSH_EVENTS)
                ]
                cpu, wall = time.process_time(), time.perf_counter()
                trail.submit(records)  # each record made its row here, on the request path
                written = trail.flush()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                assert written == FLUSH_EVENTS, written
                best_cpu = min(best_cpu, 1000 * cpu / FLUSH_EVENTS)
                best_wall = min(best_wall, 1000 * wall / FLUSH_EVENTS)
            out[phase] = (best_cpu, best_wall)
    finally:
        with app.app_context():
            runtime.close()
    return out


def report_flush(flush: dict[str, tuple[float, float]], comparisons: list[Comparison]) -> str:
    off_cpu = {c.phase: c.median_of(paired.OFF, cpu_ms) for c in comparisons}
    lines = [
        f"The trail alone, best of {FLUSH_ROUNDS} batches of {FLUSH_EVENTS:,} events (each "
        "made its row and buffered, then flushed: all it adds to a read but noting what was "
        "read):",
        f"  {'phase':<13}{'CPU ms/event':>13}{'wall ms/event':>14}{'of a read':>11}",
    ]
    for phase, (cpu, wall) in flush.items():
        off = off_cpu.get(phase)
        share = f"{100 * wall / off:>10.1f}%" if off and off == off else f"{'-':>11}"
        lines.append(f"  {phase:<13}{cpu:>13.3f}{wall:>14.3f}{share}")
    lines.append(
        "  (of a read: wall ms per event, worker + PostgreSQL, / the trail-off CPU ms per "
        "request above)"
    )
    return "\n".join(lines)
