"""What the access audit trail costs reads (issue 15: reads at most 10% slower with it on).

The read phases run twice each, on a fresh server with `AUDIT_TRAIL=off` and then with it on,
alternating per phase so that the machine's drift (other processes, CPU frequency) falls on
both sides alike. Same data, clients, warm-up and window as the main phases. With the trail
on, every read buffers its AuditEvents and the flusher writes them to PostgreSQL on the same
machine during the window: that write load is part of the measured cost, as it would be in
production.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.load import Monitor, PhaseResult, run_phase
from benchmarks.server import Server, free_port

READ_PHASES = ("get", "search", "legacy-list")
TARGET = 0.10


def compare(
    args: argparse.Namespace,
    env: dict[str, str],
    log_dir: Path,
    point_at: Callable[[int], None],
    factory: Callable[[str], Any],
) -> dict[tuple[str, str], PhaseResult]:
    """Run each read phase with the trail off, then on; `point_at(port)` aims the clients."""
    results: dict[tuple[str, str], PhaseResult] = {}
    phases = [p for p in READ_PHASES if p in args.phase_list]
    for phase in phases:
        for mode in ("off", "on"):
            port = free_port()
            server = Server(
                {**env, "AUDIT_TRAIL": mode},
                log_dir / f"server-audit-{mode}.log",
                workers=args.workers,
                threads=args.threads,
                port=port,
            )
            server.start()
            try:
                point_at(port)
                result = run_phase(
                    f"{phase} (audit {mode})",
                    args.clients,
                    factory(phase),
                    warmup=args.warmup,
                    duration=args.duration,
                    monitor=Monitor(server.pid, args.database),
                )
            finally:
                server.stop()
            results[(phase, mode)] = result
            print(
                f"  {phase:<12} audit {mode:<3} {result.rps:8,.0f} req/s  "
                f"p50 {result.pct(50):6.1f} ms  p99 {result.pct(99):6.1f} ms  "
                f"errors {result.errors}"
            )
    return results


def _cpu_ms(result: PhaseResult) -> float | None:
    """Worker plus PostgreSQL CPU per request: what the trail adds (its flusher runs in the
    workers, its inserts in PostgreSQL), and far less disturbed than throughput by other
    work on a shared machine."""
    app, pg = result.server_ms_per_request, result.pg_ms_per_request
    return None if app is None or pg is None else app + pg


def report(results: dict[tuple[str, str], PhaseResult]) -> tuple[str, list[dict[str, Any]]]:
    lines = [
        "Cost of the access audit trail on reads (same data; off, then on, per phase).",
        "Verdict on CPU per request (workers + PostgreSQL); throughput is shown too, but on a",
        "shared machine it moves with everyone else's load:",
        f"  {'phase':<13}{'off req/s':>10}{'on req/s':>10}{'tput':>8}"
        f"{'CPU off':>9}{'CPU on':>8}{'CPU':>8}{'p50 off':>9}{'p50 on':>8}  target",
    ]
    checks = []
    for phase in READ_PHASES:
        off, on = results.get((phase, "off")), results.get((phase, "on"))
        if off is None or on is None or not off.rps:
            continue
        slower = 1.0 - on.rps / off.rps
        cpu_off, cpu_on = _cpu_ms(off), _cpu_ms(on)
        extra = (cpu_on / cpu_off - 1.0) if cpu_off and cpu_on else None
        ok = extra is not None and extra <= TARGET and not on.errors and not off.errors
        lines.append(
            f"  {phase:<13}{off.rps:>10,.0f}{on.rps:>10,.0f}{-100 * slower:>+7.1f}%"
            f"{cpu_off or float('nan'):>9.2f}{cpu_on or float('nan'):>8.2f}"
            f"{100 * (extra if extra is not None else float('nan')):>+7.1f}%"
            f"{off.pct(50):>9.1f}{on.pct(50):>8.1f}"
            f"  {'met' if ok else 'MISSED'} (CPU/request <= +{100 * TARGET:.0f}%)"
        )
        checks.append(
            {
                "target": f"{phase}: audit on costs at most {100 * TARGET:.0f}% more per read",
                "off_rps": off.rps,
                "on_rps": on.rps,
                "throughput_change": -slower,
                "cpu_ms_off": cpu_off,
                "cpu_ms_on": cpu_on,
                "cpu_change": extra,
                "met": ok,
            }
        )
    return "\n".join(lines), checks


# ---------------------------------------------------------------------- in-process
ROUNDS = 5
PER_ROUND = 150


def in_process(
    settings: Any, token: str, tenant: str, paths: dict[str, str]
) -> dict[str, tuple[float, float]]:
    """Milliseconds per read, best of `ROUNDS` alternating rounds, trail off and on.

    The same reads through two apps in this process (no network, no gunicorn), the trail's
    deferred work included: with the trail on, each round ends by writing the round's
    AuditEvents (`flush`), timed with it. The best round of each mode is the one least
    disturbed by the machine's other work, which makes this the steadier of the two
    comparisons on a shared machine. Access lines are silenced for both modes alike.
    """
    import dataclasses
    import logging
    import time

    from app import create_app
    from app.runtime import get_runtime

    logging.getLogger("app.access").setLevel(logging.WARNING)
    apps = {
        mode: create_app(
            dataclasses.replace(settings, audit_enabled=(mode == "on"), audit_flush_seconds=60)
        )
        for mode in ("off", "on")
    }
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}
    out: dict[str, tuple[float, float]] = {}
    try:
        for phase, path in paths.items():
            best = {"off": float("inf"), "on": float("inf")}
            for _round in range(ROUNDS):
                for mode, app in apps.items():
                    client = app.test_client()
                    client.get(path, headers=headers)  # warm
                    with app.app_context():
                        trail = get_runtime().audit
                    if trail is not None:
                        trail.flush()
                    started = time.perf_counter()
                    for _ in range(PER_ROUND):
                        r = client.get(path, headers=headers)
                        assert r.status_code == 200, (path, r.status_code)
                    if trail is not None:
                        trail.flush()
                    ms = 1000 * (time.perf_counter() - started) / PER_ROUND
                    best[mode] = min(best[mode], ms)
            out[phase] = (best["off"], best["on"])
            print(
                f"  {phase:<12} in-process best of {ROUNDS}: off {best['off']:.2f} ms/read, "
                f"on {best['on']:.2f} ms/read ({100 * (best['on'] / best['off'] - 1):+.1f}%)"
            )
    finally:
        for app in apps.values():
            with app.app_context():
                get_runtime().close()
    return out


def report_in_process(
    measured: dict[str, tuple[float, float]],
) -> tuple[str, list[dict[str, Any]]]:
    lines = [
        f"In-process, best of {ROUNDS} alternating rounds of {PER_ROUND} reads (the trail's "
        "buffered writes included):",
        f"  {'phase':<13}{'off ms/read':>12}{'on ms/read':>12}{'cost':>9}  target",
    ]
    checks = []
    for phase, (off, on) in measured.items():
        extra = on / off - 1.0
        ok = extra <= TARGET
        lines.append(
            f"  {phase:<13}{off:>12.2f}{on:>12.2f}{100 * extra:>+8.1f}%"
            f"  {'met' if ok else 'MISSED'} (<= +{100 * TARGET:.0f}%)"
        )
        checks.append(
            {
                "target": f"{phase} in-process: audit on at most {100 * TARGET:.0f}% slower",
                "off_ms": off,
                "on_ms": on,
                "change": extra,
                "met": ok,
            }
        )
    return "\n".join(lines), checks


# ---------------------------------------------------------------------- the flusher alone
FLUSH_EVENTS = 2_000
#: Resources an event names: a GET's (one) and a page's (twenty).
FLUSH_SHAPES = {"get": 1, "search": 20, "legacy-list": 20}


def flush_cost(settings: Any, tenant: str, phases: list[str]) -> dict[str, tuple[float, float]]:
    """Worker CPU and wall milliseconds per buffered read event written by the trail's
    flusher (`AuditTrail.flush`), best of `ROUNDS` batches of `FLUSH_EVENTS`, for the event
    each read phase records.

    This is everything the trail does for a read besides appending one record to the buffer
    on the request path, timed alone: on a shared machine it is far steadier than the off/on
    comparisons above, whose windows other people's work moves by tens of percent. Wall time
    includes PostgreSQL's share (the flush waits for it)."""
    import dataclasses
    import os
    import time
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
            for _round in range(ROUNDS):
                now = datetime.now(UTC)
                trail.submit(
                    [
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
                )
                cpu, wall = time.process_time(), time.perf_counter()
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


def report_flush(
    flush: dict[str, tuple[float, float]], in_process_ms: dict[str, tuple[float, float]]
) -> str:
    lines = [
        f"The flusher alone, best of {ROUNDS} batches of {FLUSH_EVENTS:,} events (all the trail "
        "adds to a read besides a buffer append):",
        f"  {'phase':<13}{'CPU ms/event':>13}{'wall ms/event':>14}{'of a read':>11}",
    ]
    for phase, (cpu, wall) in flush.items():
        off = in_process_ms.get(phase, (0.0, 0.0))[0]
        share = f"{100 * wall / off:>10.1f}%" if off else f"{'-':>11}"
        lines.append(f"  {phase:<13}{cpu:>13.3f}{wall:>14.3f}{share}")
    lines.append("  (of a read: wall ms per event / the in-process off ms per read above)")
    return "\n".join(lines)
