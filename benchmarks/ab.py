"""A/B: this checkout against another commit, in one run, on the same machine state.

    make bench ARGS="--baseline 9e84d25 [--phases get,post] [--duration 20] ..."

1. Builds the baseline (benchmarks/baseline.py: exported tree + its own venv, cached under
   `.bench/`).
2. For each side: a database of its own (`--database` and `--database`_base), migrated by
   that side's `orders-service migrate` and seeded by a worker running that side's code
   (benchmarks/seed_worker.py) with the same generator and random seed: the same data shape,
   written by the code that owns the schema. The two schemas are compared and the report
   says whether they are equal. Redis db `--redis` is flushed once and shared (every key a
   phase writes is unique to its request).
3. Starts both servers (`orders-service serve`, same workers x threads, different ports) and
   keeps both up; each side gets a development token minted with its own key.
4. Runs every phase against the two alternately, A B B A (A = this checkout), with the same
   client, warm-up and window; single-use pools (drafts, CDS patients) are seeded for each
   run into that run's database just before it.
5. Prints per phase, for both: req/s, p50/p99, server CPU ms per request; the ratio
   new/baseline of req/s (of the two runs' total) with its spread (the ratio of each
   adjacent pair, A1/B1 and A2/B2), and the targets of issue 13.

Only the HTTP phases run here (the raw PostgreSQL ones measure the machine, not a build).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import baseline as baselines
from benchmarks import seed as seeding
from benchmarks.load import Monitor, PhaseResult, run_phase
from benchmarks.phases import HTTP_PHASES, TENANT, WRITE_PHASES, Bench, vacuum_analyze
from benchmarks.seed_worker import Worker, WorkerSeeder
from benchmarks.server import ROOT, Server, flush_redis, free_port, fresh_database, run_cli

#: Issue 13: new/baseline req/s at least this, per phase (search: not slower).
RATIO_TARGETS = {
    "post": 1.8,
    "put": 1.4,
    "get": 1.9,
    "legacy-create": 1.8,
    "activate": 1.5,
    "search": 1.0,
}
WRITE_P99_MS = 50.0
ORDER = ("new", "base", "base", "new")


@dataclass
class Side:
    name: str  # "new" | "base"
    label: str
    python: str
    cwd: Path  # where its CLI and server run (its source tree)
    worker_cwd: Path  # a folder holding the benchmarks package its worker runs
    script: list[str] | None
    database: str
    env: dict[str, str]
    worker: Worker | None = None
    server: Server | None = None
    monitor: Monitor | None = None
    bench: Bench | None = None
    data: seeding.Dataset | None = None
    runs: dict[str, list[PhaseResult]] = field(default_factory=dict)


SCHEMA_SQL = """
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' '
       || is_nullable || ' ' || coalesce(column_default, '')
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
"""


def schema_difference(pg: str, a: str, b: str) -> list[str]:
    """Tables, columns, indexes and constraints present in one database and not the other
    (alembic's own version table included: equal means the same migrations)."""
    shapes = []
    for name in (a, b):
        with psycopg.connect(f"{pg}/{name}") as conn:
            shapes.append({row[0] for row in conn.execute(SCHEMA_SQL)})
    only_a = sorted(f"only in {a}: {x}" for x in shapes[0] - shapes[1])
    only_b = sorted(f"only in {b}: {x}" for x in shapes[1] - shapes[0])
    return only_a + only_b


def _sides(args: argparse.Namespace, build: baselines.Build, tmp: Path) -> list[Side]:
    import sys

    db_url = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "PYTHON"))}
    sides = []
    serve = f" [serve {args.serve_args}]" if args.serve_args else ""
    for name, label, python, cwd, worker_cwd, script, database in (
        ("new", f"this checkout {baselines.head_label()}{serve}", sys.executable, ROOT, ROOT, None,
         args.database),
        ("base", build.label, str(build.python), build.src, build.harness, build.script,
         f"{args.database}_base"),
    ):  # fmt: skip
        instance = tmp / name / "instance"
        instance.mkdir(parents=True)
        env = {
            **base_env,
            "DATABASE_URL": f"{db_url}/{database}",
            "REDIS_URL": args.redis,
            "ORDERS_INSTANCE_PATH": str(instance),
            "PYTHONUNBUFFERED": "1",
        }
        sides.append(Side(name, label, python, cwd, worker_cwd, script, database, env))
    return sides


def _setup(side: Side, args: argparse.Namespace, tmp: Path) -> None:
    started = time.perf_counter()
    fresh_database(args.pg, side.database)
    run_cli(["migrate"], side.env, script=side.script, cwd=side.cwd)
    side.worker = Worker(side.python, side.worker_cwd, side.env, tmp / f"{side.name}-seed.log")
    raw = side.worker.call(
        "seed",
        tenant=TENANT,
        scale=args.scale,
        hot=args.hot,
        patients=args.patients,
        seed=args.seed,
    )
    side.data = seeding.Dataset(**raw)
    vacuum_analyze(f"{args.pg}/{side.database}")
    print(
        f"  {side.name:<4} {side.label}: database {side.database} migrated and seeded "
        f"({len(side.data.service_requests):,} ServiceRequests) in "
        f"{time.perf_counter() - started:.1f}s"
    )


def _start(side: Side, args: argparse.Namespace, tmp: Path) -> None:
    assert side.worker is not None and side.data is not None
    token = side.worker.call(
        "token",
        sub="bench-clinician",
        roles=["CLINICIAN"],
        tenants=[TENANT],
        expires_in=24 * 3600,
    )
    port = free_port()
    side.server = Server(
        side.env,
        tmp / f"{side.name}-server.log",
        workers=args.workers,
        threads=args.threads,
        port=port,
        script=side.script,
        cwd=side.cwd,
        serve_args=shlex.split(args.serve_args) if side.name == "new" else [],
    )
    side.server.start()
    side.monitor = Monitor(side.server.pid, side.database)
    side.bench = Bench(
        args, port, token, side.data, f"{args.pg}/{side.database}", WorkerSeeder(side.worker)
    )
    print(f"  {side.name:<4} server on 127.0.0.1:{port}, workers {side.server.worker_pids()}")


# ---------------------------------------------------------------------- report
def _pooled(runs: list[PhaseResult], p: float) -> float:
    merged = PhaseResult("pooled", 0, 1.0, [x for r in runs for x in r.latencies_ms], 0, {}, [])  # type: ignore[arg-type]
    return merged.pct(p)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summarise(phase: str, new: list[PhaseResult], base: list[PhaseResult]) -> dict[str, Any]:
    """A phase's two runs per side → one row: totals, pooled percentiles, the ratio of the
    total requests (equal windows) and of each adjacent pair (A1/B1, A2/B2 in A B B A)."""
    new_ms = _mean([r.server_ms_per_request for r in new])
    base_ms = _mean([r.server_ms_per_request for r in base])
    n_req = sum(r.requests for r in new)
    b_req = sum(r.requests for r in base)
    pairs = [
        a.rps / b.rps if b.rps else float("nan") for a, b in zip(new, reversed(base), strict=False)
    ]
    return {
        "phase": phase,
        "new_rps": sum(r.rps for r in new) / len(new),
        "base_rps": sum(r.rps for r in base) / len(base),
        "ratio": n_req / b_req if b_req else float("nan"),
        "pair_ratios": pairs,
        "new_p50": _pooled(new, 50),
        "new_p99": _pooled(new, 99),
        "base_p50": _pooled(base, 50),
        "base_p99": _pooled(base, 99),
        "new_ms": new_ms,
        "base_ms": base_ms,
        "cpu_ratio": (base_ms / new_ms) if base_ms and new_ms else None,
        "new_pg_ms": _mean([r.pg_ms_per_request for r in new]),
        "base_pg_ms": _mean([r.pg_ms_per_request for r in base]),
        "errors_new": sum(r.errors for r in new),
        "errors_base": sum(r.errors for r in base),
        "exhausted": any(r.exhausted for r in new + base),
        "other_cpu_max": max((r.metrics.get("other_cpu") or 0.0) for r in new + base),
        "runs_rps": [round(r.rps, 1) for r in new + base],
    }


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def report(rows: list[dict[str, Any]], sides: list[Side], args: argparse.Namespace) -> str:
    head = (
        f"{'phase':<14} | {'new req/s':>9} | {'base req/s':>10} | {'new/base':>8} | "
        f"{'spread':>11} | {'new p50/p99 ms':>15} | {'base p50/p99 ms':>15} | "
        f"{'srv ms/req new':>14} | {'base':>6} | {'base/new':>8} | {'PG ms new':>9} | "
        f"{'base':>6} | {'errors':>7} | {'other CPU':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        errors = f"{r['errors_new']}/{r['errors_base']}{'*' if r['exhausted'] else ''}"
        spread = " - ".join(_f(x, ".2f") for x in (min(r["pair_ratios"]), max(r["pair_ratios"])))
        lines.append(
            f"{r['phase']:<14} | {r['new_rps']:>9,.0f} | {r['base_rps']:>10,.0f} | "
            f"{r['ratio']:>7.2f}x | {spread:>11} | "
            f"{_f(r['new_p50'], '.1f') + ' / ' + _f(r['new_p99'], '.1f'):>15} | "
            f"{_f(r['base_p50'], '.1f') + ' / ' + _f(r['base_p99'], '.1f'):>15} | "
            f"{_f(r['new_ms'], '.2f'):>14} | {_f(r['base_ms'], '.2f'):>6} | "
            f"{_f(r['cpu_ratio'], '.2f') + 'x':>8} | "
            f"{_f(r['new_pg_ms'], '.2f'):>9} | {_f(r['base_pg_ms'], '.2f'):>6} | "
            f"{errors:>7} | "
            f"{r['other_cpu_max']:>8.0f}%"
        )
    new, base = sides
    lines.append(
        f"new = {new.label}; base = {base.label}. Each side ran twice per phase, A B B A "
        f"({args.warmup:g}s warm-up + {args.duration:g}s window each, {args.clients} clients, "
        f"{args.workers} workers x {args.threads} threads). req/s: mean of the two windows; "
        "new/base: ratio of the requests completed; spread: the ratios of the adjacent pairs "
        "(A1/B1, A2/B2); p50/p99 over both windows; srv ms/req: server CPU per request (mean "
        "of the windows); base/new: how many times less server CPU a request of the new build "
        "takes (the comparison least disturbed by other work on the machine); PG ms: "
        "PostgreSQL CPU per request; other CPU: the most any window "
        "saw of other work on the machine (% of one core); * a single-use pool ran out."
    )
    lines.append("")
    lines.append("Targets (issue 13), new against base in this run:")
    for r in rows:
        want = RATIO_TARGETS.get(r["phase"])
        if want is not None:
            met = r["ratio"] >= want
            lines.append(
                f"  [{'met' if met else 'NOT MET':>7}] {r['phase']:<14} >= {want:.1f}x   "
                f"{r['ratio']:.2f}x (pairs {', '.join(_f(x, '.2f') for x in r['pair_ratios'])})"
            )
    for r in rows:
        if r["phase"] in WRITE_PHASES:
            met = r["new_p99"] < WRITE_P99_MS
            lines.append(
                f"  [{'met' if met else 'NOT MET':>7}] {r['phase']:<14} p99 < {WRITE_P99_MS:.0f} "
                f"ms   {r['new_p99']:.1f} ms"
            )
    errors = sum(r["errors_new"] for r in rows)
    lines.append(f"  [{'met' if errors == 0 else 'NOT MET':>7}] no errors (new)   {errors}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> int:
    phases = [p for p in args.phase_list if p in HTTP_PHASES]
    if args.profile:
        raise SystemExit("--profile is for a plain run (without --baseline)")
    started = time.perf_counter()
    build = baselines.build(args.baseline)
    tmp_dir = tempfile.TemporaryDirectory(prefix="orders-bench-ab-")
    tmp = Path(tmp_dir.name)
    sides = _sides(args, build, tmp)
    by_name = {s.name: s for s in sides}
    rows: list[dict[str, Any]] = []
    print(
        f"A/B benchmark: new = {sides[0].label}, base = {sides[1].label}; scale "
        f"{args.scale:,}, {args.clients} clients, {args.workers}x{args.threads}, warm-up "
        f"{args.warmup:g}s, window {args.duration:g}s; load {os.getloadavg()[0]:.2f}"
    )
    try:
        flush_redis(args.redis)
        for side in sides:
            _setup(side, args, tmp)
        diff = schema_difference(args.pg, sides[0].database, sides[1].database)
        print(
            "  schemas: equal (tables, columns, indexes, constraints)"
            if not diff
            else "  schemas differ (each side migrated and seeded by its own code):\n    "
            + "\n    ".join(diff)
        )
        for side in sides:
            _start(side, args, tmp)
        for phase in phases:
            for k, name in enumerate(ORDER):
                side = by_name[name]
                assert side.bench is not None and side.monitor is not None
                side.bench.prepare(phase)
                result = run_phase(
                    phase,
                    args.clients,
                    side.bench.factory(phase),
                    warmup=args.warmup,
                    duration=args.duration,
                    monitor=side.monitor,
                )
                side.bench.results[phase] = result
                side.runs.setdefault(phase, []).append(result)
                print(
                    f"  {phase:<14} {k + 1}/4 {name:<4} {result.rps:8,.0f} req/s  p50 "
                    f"{result.pct(50):6.1f} ms  p99 {result.pct(99):6.1f} ms  srv "
                    f"{_f(result.server_ms_per_request, '.2f')} ms/req  errors {result.errors}"
                    f"  other CPU {result.metrics.get('other_cpu') or 0:.0f}%"
                    + (" (pool exhausted)" if result.exhausted else "")
                )
                for sample in result.error_samples[:3]:
                    print(f"      error: {sample}")
            rows.append(summarise(phase, by_name["new"].runs[phase], by_name["base"].runs[phase]))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers")
        return 130
    finally:
        for side in sides:
            if side.server is not None:
                if any(r.errors for runs in side.runs.values() for r in runs):
                    print(f"{side.name} server log (tail):\n" + side.server.log_tail(15))
                side.server.stop()
            if side.worker is not None:
                side.worker.close()
        with contextlib.suppress(OSError):
            tmp_dir.cleanup()
    print()
    print(
        f"A/B results (scale {args.scale:,}; run of {time.perf_counter() - started:.0f}s; "
        f"load average at the end {os.getloadavg()[0]:.2f})"
    )
    text = report(rows, sides, args)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "new": sides[0].label,
                    "base": sides[1].label,
                    "rows": rows,
                    "runs": {
                        s.name: {p: [r.summary() for r in rs] for p, rs in s.runs.items()}
                        for s in sides
                    },
                },
                indent=2,
                default=str,
            )
        )
    return 0
