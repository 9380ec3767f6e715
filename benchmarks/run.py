"""One command that benchmarks the production stack and prints one table.

    .venv/bin/python -m benchmarks.run [--scale 20000] [--workers 2] [--threads 4]
        [--clients 16] [--warmup 5] [--duration 20] [--phases get,search,...]
        [--explain] [--profile DIR] [--json FILE]

(`make bench ARGS="..."` runs the same.) It:

1. drops and creates the database `orders_bench`, runs `orders-service migrate`, flushes
   Redis db 14, and seeds through the repository's bulk path (benchmarks/seed.py) — not
   HTTP: `--scale` ServiceRequests, `--hot` of them on one patient (80% active), the rest
   spread over `--patients` patients, each with an in-progress Encounter;
2. starts `orders-service serve` (its default server, `--workers` x `--threads`) on a free
   loopback port with a temporary instance folder (development tokens), waits for /readyz,
   and always stops it at the end (errors and Ctrl-C included);
3. runs each phase with `--clients` closed-loop clients: `--warmup` s unmeasured, then a
   `--duration` s window — req/s, p50/p95/p99, errors (unexpected statuses), server CPU
   (main process + workers), PostgreSQL CPU, the load generator's CPU, workers' peak RSS;
4. measures raw PostgreSQL insert and primary-key select rates with the same machinery
   (benchmarks/raw_pg.py) and prints every phase as a fraction of them, with the targets of
   issue 5 marked met / not met.

Pools that write phases consume (drafts to PUT and to activate, patients for the CDS
create) are seeded just before their phase, sized from the write rates already measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import audit_cost
from benchmarks import events as events_phase
from benchmarks import seed as seeding
from benchmarks.load import Monitor, PhaseResult, run_phase
from benchmarks.phases import (
    HTTP_PHASES,
    TENANT,
    WRITE_PHASES,
    Bench,
    InProcessSeeder,
    vacuum_analyze,
)
from benchmarks.raw_pg import MAX_CONNECTIONS, RawPostgres
from benchmarks.roundtrips import Counter_, Counts
from benchmarks.server import Server, flush_redis, free_port, fresh_database, run_cli

#: The HTTP phases (benchmarks/phases.py), then `events` (benchmarks/events.py: the outbox's
#: cost and delivery lag; not part of an A/B run).
ALL_PHASES = ["raw-insert", "raw-select", *HTTP_PHASES, "events"]
#: Run again after the server phases (not selectable): this machine kind's speed drifts
#: within a run, so ratios use the mean of the insert rate measured before and after.
RAW_INSERT_END = "raw-insert-end"
#: Above this relative difference between the two raw insert rates the report warns.
RAW_DRIFT_WARN = 0.15
LABELS = {
    "raw-insert": "raw PG insert, 1 row/txn",
    RAW_INSERT_END: "raw PG insert (end of run)",
    "raw-select": "raw PG select by primary key",
    "get": "GET ServiceRequest/{id}",
    "search": "search patient+status=active _count=20",
    "legacy-list": "GET /api/v1/orders?patientId (hot)",
    "post": "POST ServiceRequest (draft, CDS)",
    "put": "PUT ServiceRequest with If-Match",
    "activate": "POST ServiceRequest/{id}/$activate",
    "legacy-create": "POST /api/v1/orders medication+CDS",
}
#: Issue 5 targets: fraction of the raw insert rate measured in the same run.
RATIO_TARGETS = [
    ("post", "FHIR POST", 0.10),
    ("put", "PUT with If-Match", 0.08),
    ("legacy-create", "legacy create with CDS", 0.07),
    ("search", "patient search", 0.11),
    ("get", "GET by id", 0.35),
]
WRITE_P99_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark orders-service (its server + PostgreSQL + Redis) on loopback.",
    )
    p.add_argument("--scale", type=int, default=20_000, help="ServiceRequests to seed")
    p.add_argument("--hot", type=int, default=2_000, help="of which on the one hot patient")
    p.add_argument("--patients", type=int, default=None, help="other patients [scale/20]")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    p.add_argument("--threads", type=int, default=4, help="threads per server worker")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients per phase")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument(
        "--phases",
        default=",".join(ALL_PHASES),
        help=f"comma-separated subset of {','.join(ALL_PHASES)} (or 'none')",
    )
    p.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the search phase SQL")
    p.add_argument("--profile", type=Path, default=None, help="py-spy each phase into DIR")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--database", default="orders_bench")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    p.add_argument("--port", type=int, default=0, help="server port [a free one]")
    p.add_argument(
        "--servers",
        type=int,
        default=1,
        help="server processes on different ports sharing PostgreSQL and Redis; the clients "
        "are spread over them, and the scale-out checks race them (benchmarks/scale_out.py)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed of the data set")
    p.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off on the benchmark database: commits do not wait for the "
        "(shared) disk, so a comparison measures CPU and locks, not the neighbours' fsyncs",
    )
    p.add_argument(
        "--events-rounds",
        type=int,
        default=2,
        help="events phase: rounds of off / outbox / delivering windows (more: less noise)",
    )
    p.add_argument(
        "--no-audit-compare",
        dest="audit_compare",
        action="store_false",
        help="skip re-running the read phases with the audit trail off and on",
    )
    p.add_argument(
        "--audit-rounds",
        type=int,
        default=12,
        help="audit compare: A B B A pairs of short windows per read phase, trail off / on "
        "(more: a narrower interval)",
    )
    p.add_argument(
        "--serve-args",
        default="",
        help="more `orders-service serve` arguments for this checkout's server, e.g. "
        "'--server gunicorn' (A/B: the baseline's server gets none, so runs its own default)",
    )
    p.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="A/B: run every phase against this checkout and the server built at REF, "
        "alternately (benchmarks/ab.py); the baseline's database is --database + _base",
    )
    args = p.parse_args(argv)
    phases = [] if args.phases.strip() in ("", "none") else args.phases.split(",")
    unknown = [x for x in phases if x not in ALL_PHASES]
    if unknown:
        p.error(f"unknown phase(s) {unknown}; choose from {ALL_PHASES}")
    if args.audit_rounds < 1:
        p.error("--audit-rounds must be at least 1")
    args.phase_list = [x for x in ALL_PHASES if x in phases]  # always in the canonical order
    if "raw-insert" in args.phase_list and any(not x.startswith("raw") for x in args.phase_list):
        args.phase_list.append(RAW_INSERT_END)
    args.patients = args.patients or max(50, args.scale // 20)
    return args


# ---------------------------------------------------------------------- set-up
def explain_search(engine: Any, data: seeding.Dataset) -> str:
    """The exact statements the repository issues for the search phase, under EXPLAIN."""
    from sqlalchemy import event

    from app.store import Repository
    from app.store.search.query import parse_search

    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _x: Any, _m: bool) -> None:
        captured.append((statement, params))

    params = [("patient", data.hot_patient), ("status", "active"), ("_count", "20")]
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            page = Repository(conn, data.tenant).search(parse_search("ServiceRequest", params))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    out = [
        f"EXPLAIN of ServiceRequest?patient={data.hot_patient}&status=active&_count=20 "
        f"(total {page.total}, page of {len(page.resources)}):"
    ]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, values in captured:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, values)
            out.append("\n-- " + " ".join(statement.split()))
            out.extend(str(line) for (line,) in cur.fetchall())
    finally:
        raw.close()
    return "\n".join(out)


# ---------------------------------------------------------------------- profiling
class Profiler:
    """py-spy on every worker during each phase window (perturbs the numbers a little)."""

    def __init__(self, out_dir: Path, server: Server, duration: float) -> None:
        import shutil

        self.out_dir = out_dir
        self.server = server
        self.duration = duration
        exe = Path(sys.executable).parent / "py-spy"
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")
        if self.exe is None:
            raise SystemExit("--profile needs py-spy: pip install -e '.[bench]'")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[Path] = []
        self.phase = ""

    def hook(self, phase: str) -> Callable[[bool], None]:
        def on_window(opening: bool) -> None:
            if opening:
                self.phase = phase
                self.files = []
                for k, pid in enumerate(self.server.worker_pids()):
                    path = self.out_dir / f"{phase}.worker{k}.txt"
                    self.files.append(path)
                    self.procs.append(
                        subprocess.Popen(
                            [
                                str(self.exe),
                                "record",
                                "--pid",
                                str(pid),
                                "--duration",
                                str(max(1, int(self.duration) - 1)),
                                "--rate",
                                "100",
                                "--gil",
                                "--nonblocking",
                                "--format",
                                "raw",
                                "--output",
                                str(path),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )

        return on_window

    def finish(self) -> str:
        for proc in self.procs:
            try:
                proc.wait(timeout=self.duration + 30)
            except subprocess.TimeoutExpired:
                proc.terminate()
        self.procs = []
        from benchmarks.profile_summary import load, summarise

        files = [f for f in self.files if f.exists()]
        text = summarise(load(files)) if files else "  (py-spy wrote nothing)"
        (self.out_dir / f"{self.phase}.summary.txt").write_text(text + "\n")
        return text


# ---------------------------------------------------------------------- report
def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def report(
    results: dict[str, PhaseResult], args: argparse.Namespace, trips: dict[str, Counts]
) -> tuple[str, list[dict]]:
    inserts = [results[p].rps for p in ("raw-insert", RAW_INSERT_END) if p in results]
    raw_select = results.get("raw-select")
    ins = sum(inserts) / len(inserts) if inserts else None
    sel = raw_select.rps if raw_select else None
    cols = [
        ("phase", "<", 38),
        ("req/s", ">", 8),
        ("p50 ms", ">", 7),
        ("p95 ms", ">", 7),
        ("p99 ms", ">", 7),
        ("errors", ">", 6),
        ("server CPU", ">", 10),
        ("PG CPU", ">", 7),
        ("client CPU", ">", 10),
        ("other CPU", ">", 9),
        ("peak RSS", ">", 9),
        ("srv ms/req", ">", 10),
        ("DB trips", ">", 8),
        ("% raw insert", ">", 12),
        ("% raw select", ">", 12),
    ]
    head = " | ".join(f"{name:{align}{w}}" for name, align, w in cols)
    lines = [head, "-+-".join("-" * w for _n, _a, w in cols)]
    for name in args.phase_list:
        r = results.get(name)
        if r is None:
            continue
        m = r.metrics
        label = LABELS[name] + (f", {r.clients} conns" if name.startswith("raw") else "")
        errors = str(r.errors) + ("*" if r.exhausted else "")
        cells = [
            label,
            _fmt(r.rps, ",.0f"),
            _fmt(r.pct(50), ".1f"),
            _fmt(r.pct(95), ".1f"),
            _fmt(r.pct(99), ".1f"),
            errors,
            _fmt(m.get("server_cpu") if not name.startswith("raw") else None, ".0f", "%"),
            _fmt(m.get("pg_cpu"), ".0f", "%"),
            _fmt(m.get("client_cpu"), ".0f", "%"),
            _fmt(m.get("other_cpu"), ".0f", "%"),
            _fmt(m.get("peak_rss_mb") if not name.startswith("raw") else None, ".0f", " MB"),
            _fmt(r.server_ms_per_request if not name.startswith("raw") else None, ".2f"),
            str(trips[name].round_trips)
            if name in trips
            else ("1" if name.startswith("raw") else "-"),
            _fmt(100.0 * r.rps / ins if ins else None, ".1f", "%"),
            _fmt(
                100.0 * r.rps / sel if sel and name in ("get", "raw-select") else None, ".1f", "%"
            ),
        ]
        lines.append(" | ".join(f"{c:{a}{w}}" for c, (_n, a, w) in zip(cells, cols, strict=True)))
    lines.append(
        "CPU columns: % of one core over the window (this machine has "
        f"{os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%). server = main process + "
        "workers; PG = all postgres processes; client = this load generator; other = the rest "
        "of the machine (other jobs, kernel), i.e. noise. srv ms/req = server CPU ms per "
        "request. DB trips = database round trips one request makes (statements + BEGIN, "
        "COMMIT per transaction; see below). * = a single-use pool ran out."
    )
    noisy = [
        name
        for name in args.phase_list
        if name in results and (results[name].metrics.get("other_cpu") or 0.0) > 25.0
    ]
    if noisy:
        lines.append(
            f"WARNING: other work used > 25% of a core during {', '.join(noisy)}: those "
            "absolute numbers (and ratios) understate this server; run again on a quiet machine."
        )
    if ins and len(inserts) == 2:
        drift = abs(inserts[0] - inserts[1]) / ins
        lines.append(
            f"Raw insert rate: {inserts[0]:,.0f}/s at the start, {inserts[1]:,.0f}/s at the end "
            f"({drift:.0%} apart); every ratio uses their mean, {ins:,.0f}/s."
        )
        if drift > RAW_DRIFT_WARN:
            lines.append(
                "WARNING: the machine's speed drifted during the run; compare server ms/req "
                "between runs rather than ratios, or run again."
            )
    if trips:
        lines.append("")
        lines.append("Round trips of one request per phase (replayed in-process, instrumented):")
        for name in args.phase_list:
            if name in trips:
                lines.append(f"  {name:<14} {trips[name].describe()}")
    checks: list[dict] = []
    for phase, what, frac in RATIO_TARGETS:
        r = results.get(phase)
        if r is None or not ins:
            continue
        ratio = r.rps / ins
        checks.append(
            {
                "target": f"{what} >= {frac:.0%} of raw insert",
                "measured": f"{ratio:.1%} ({r.rps:,.0f} vs {ins:,.0f} req/s)",
                "met": ratio >= frac,
            }
        )
    for phase in WRITE_PHASES:
        r = results.get(phase)
        if r is None or not r.requests:
            continue
        checks.append(
            {
                "target": f"{LABELS[phase]}: p99 < {WRITE_P99_MS:.0f} ms",
                "measured": f"{r.pct(99):.1f} ms",
                "met": r.pct(99) < WRITE_P99_MS,
            }
        )
    http = [r for n, r in results.items() if not n.startswith("raw")]
    if http:
        total = sum(r.errors for r in http)
        checks.append({"target": "no errors", "measured": f"{total} errors", "met": total == 0})
    if checks:
        lines.append("")
        lines.append(
            "Targets (issue 5), ratios against the raw insert rate of this run"
            + (" (mean of start and end):" if len(inserts) == 2 else ":")
        )
        width = max(len(c["target"]) for c in checks)
        for c in checks:
            lines.append(
                f"  [{'met' if c['met'] else 'NOT MET':>7}] {c['target']:<{width}}  {c['measured']}"
            )
    return "\n".join(lines), checks


# ---------------------------------------------------------------------- main
def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline:
        from benchmarks import ab

        return ab.run(args)
    # SIGINT explicitly too: a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from app.auth.devkeys import mint_token
    from app.db import make_engine
    from app.settings import Settings

    db_url = f"{args.pg.replace('postgresql://', 'postgresql+psycopg://', 1)}/{args.database}"
    dsn = f"{args.pg}/{args.database}"
    tmp = tempfile.TemporaryDirectory(prefix="orders-bench-")
    instance = Path(tmp.name) / "instance"
    instance.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=args.redis,
        ORDERS_INSTANCE_PATH=str(instance),
        PYTHONUNBUFFERED="1",
    )
    settings = Settings(instance_path=instance, database_url=db_url, redis_url=args.redis)
    server: Server | None = None
    extra_servers: list[Server] = []  # `--servers N`: the second and later
    scale_out_lines: list[str] = []
    scale_out_ok = True
    engine = None
    raw = RawPostgres(dsn)
    results: dict[str, PhaseResult] = {}
    rss_trace: list[tuple[str, float]] = []
    trips: dict[str, Counts] = {}
    counter: Counter_ | None = None
    audit_results: list[audit_cost.Comparison] = []
    audit_flush: dict[str, tuple[float, float]] = {}
    events_report: list[str] = []
    events_failure = ""
    started = time.perf_counter()
    try:
        print(
            f"orders-service benchmark: scale {args.scale:,} ServiceRequests ({args.hot:,} on "
            f"the hot patient), {args.patients:,} patients; {args.workers} workers x "
            f"{args.threads} threads; {args.clients} clients; warm-up {args.warmup:g}s, "
            f"window {args.duration:g}s"
        )
        fresh_database(args.pg, args.database, async_commit=args.async_commit)
        flush_redis(args.redis)
        run_cli(["migrate"], env)
        engine = make_engine(settings)
        rng = random.Random(args.seed)
        seeding.validate_samples(
            [
                seeding.patient(1),
                seeding.encounter("pat-x"),
                seeding.service_request("pat-x", "enc-x", "draft", seeding.LAB_CODES[0], 1),
                seeding.allergy("pat-x"),
                seeding.active_medication("pat-x", "enc-x", *seeding.ACTIVE_MEDS[0]),
            ]
        )
        data = seeding.seed(
            engine, TENANT, scale=args.scale, hot=args.hot, patients=args.patients, rng=rng
        )
        history = seeding.AUDIT_HISTORY_PER_ORDER * args.scale
        history_seconds = seeding.audit_history(dsn, TENANT, data.patients, history)
        t0 = time.perf_counter()
        vacuum_analyze(dsn)
        total = sum(v for k, v in data.counts.items() if k != "hot active")
        print(
            f"seeded {total:,} resources ({data.counts}) in {data.seconds:.1f}s "
            f"({total / data.seconds:,.0f} resources/s) through Repository.create with "
            f"multi-row inserts; {history:,} past AuditEvents in {history_seconds:.1f}s; "
            f"VACUUM ANALYZE {time.perf_counter() - t0:.1f}s"
        )
        if args.explain:
            print(explain_search(engine, data))
        if not args.phase_list:
            return 0
        token = mint_token(
            settings,
            sub="bench-clinician",
            roles=["CLINICIAN"],
            tenants=[TENANT],
            expires_in=24 * 3600,
        )
        port = args.port or free_port()
        ports = [port] + [free_port() for _ in range(args.servers - 1)]
        for n, each in enumerate(ports):
            one = Server(
                env,
                Path(tmp.name) / f"server-{n}.log",
                workers=args.workers,
                threads=args.threads,
                port=each,
                serve_args=shlex.split(args.serve_args),
            )
            one.start()
            extra_servers.append(one)
            print(f"server up on 127.0.0.1:{each}: master {one.pid}, workers {one.worker_pids()}")
        server = extra_servers.pop(0)
        monitor = Monitor([s.pid for s in [server, *extra_servers] if s.pid], args.database)
        rss_trace.append(("start", max(monitor.worker_rss(), default=0) / 2**20))
        bench = Bench(
            args,
            ports,
            token,
            data,
            dsn,
            InProcessSeeder(engine, data, random.Random(args.seed + 1)),
        )
        counter = Counter_(settings)
        profiler = Profiler(args.profile, server, args.duration) if args.profile else None
        for phase in args.phase_list:
            if phase == "events":  # benchmarks/events.py: outbox cost and delivery lag
                admin = mint_token(
                    settings,
                    sub="bench-admin",
                    roles=["ADMIN"],
                    tenants=[TENANT],
                    expires_in=24 * 3600,
                )
                try:
                    pair, event_lines = events_phase.run(
                        port,
                        env,
                        Path(tmp.name),
                        tenant=TENANT,
                        patient=data.hot_patient,
                        tokens=(token, admin),
                        clients=args.clients,
                        warmup=args.warmup,
                        duration=args.duration,
                        monitor_factory=lambda: monitor,
                        counter=counter,
                        rounds=args.events_rounds,
                    )
                except Exception as exc:  # reported below; the other phases still run
                    # One phase's failure (a request that timed out, say) must not cost the
                    # rest of a 20-minute run, and its logs go with the temporary folder:
                    # print them now. The run still exits 1.
                    events_failure = f"{type(exc).__name__}: {exc}"
                    print(f"  events phase FAILED: {events_failure}")
                    print("server log (tail):\n" + server.log_tail(40), file=sys.stderr)
                    worker_log = Path(tmp.name) / "worker.log"
                    if worker_log.exists():
                        tail = worker_log.read_text(errors="replace").splitlines()[-40:]
                        print("worker log (tail):\n" + "\n".join(tail), file=sys.stderr)
                    continue
                for r in pair:
                    results[r.name] = r
                    print(
                        f"  {r.name:<14} {r.rps:8,.1f} ops/s  p50 {r.pct(50):6.1f} ms  "
                        f"p99 {r.pct(99):6.1f} ms  errors {r.errors}"
                    )
                events_report.extend(event_lines)
                continue
            if phase.startswith("raw"):
                clients = min(args.clients, MAX_CONNECTIONS)
                inserting = phase in ("raw-insert", RAW_INSERT_END)
                if inserting or not raw.ids:
                    raw.prepare(prefill=min(args.scale, 100_000))
                factory = raw.insert_client if inserting else raw.select_client
                result = run_phase(
                    phase,
                    clients,
                    factory,
                    warmup=args.warmup,
                    duration=args.duration,
                    monitor=Monitor(None, args.database),
                )
                raw.close()
            else:
                bench.prepare(phase)
                result = run_phase(
                    phase,
                    args.clients,
                    bench.factory(phase),
                    warmup=args.warmup,
                    duration=args.duration,
                    monitor=monitor,
                    on_window=profiler.hook(phase) if profiler else None,
                )
                rss_trace.append((phase, max(monitor.worker_rss(), default=0) / 2**20))
                bench.results[phase] = result  # pool sizing for the replay below
                bench.client_override = counter.client
                try:
                    op = bench.factory(phase)(args.clients + 7 if phase == "post" else 0)
                    trips[phase], outcome = counter.measure(op)
                    if not outcome[0]:
                        print(f"      round-trip replay failed: {outcome}")
                finally:
                    bench.client_override = None
            results[phase] = result
            bench.results[phase] = result
            print(
                f"  {phase:<14} {result.rps:8,.0f} req/s  p50 {result.pct(50):6.1f} ms  "
                f"p99 {result.pct(99):6.1f} ms  errors {result.errors}"
                + (" (pool exhausted)" if result.exhausted else "")
            )
            for sample in result.error_samples[:3]:
                print(f"      error: {sample}")
            if profiler and not phase.startswith("raw"):
                print(profiler.finish())
        if extra_servers:
            from benchmarks import scale_out

            scale_out_lines, scale_out_ok = scale_out.check(bench)
            for extra in extra_servers:
                extra.stop()
            extra_servers = []
            bench.port = port
        if args.audit_compare and any(p in args.phase_list for p in audit_cost.READ_PHASES):
            server.stop()
            server = None
            print(
                f"audit trail cost: trail-off and trail-on servers, {args.audit_rounds} A B B A "
                "pairs of windows per read phase"
            )

            def make_bench(new_port: int, sub: str) -> Bench:
                who = mint_token(
                    settings, sub=sub, roles=["CLINICIAN"], tenants=[TENANT], expires_in=24 * 3600
                )
                return Bench(args, new_port, who, data, dsn, bench.seeder)

            audit_results = audit_cost.compare(args, env, Path(tmp.name), make_bench, dsn)
            audit_flush = audit_cost.flush_cost(
                settings, TENANT, [p for p in audit_cost.READ_PHASES if p in args.phase_list]
            )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            if any(r.errors for r in results.values()):
                print("server log (tail):\n" + server.log_tail(15), file=sys.stderr)
            server.stop()
        for extra in extra_servers:
            extra.stop()
        raw.close()
        if counter is not None:
            counter.close()
        if engine is not None:
            engine.dispose()
        with contextlib.suppress(OSError):
            tmp.cleanup()

    table, checks = report(results, args, trips)
    print()
    print(
        f"Results ({args.workers} workers x {args.threads} threads, {args.clients} clients, "
        f"{args.duration:g}s windows, scale {args.scale:,}; total run "
        f"{time.perf_counter() - started:.0f}s)"
    )
    print(table)
    audit_table, audit_checks = audit_cost.report(audit_results, args.audit_rounds)
    if audit_results:
        print(audit_table)
    if audit_flush:
        print(audit_cost.report_flush(audit_flush, audit_results))
    unmeasured = [c.phase for c in audit_results if not c.measured]
    if unmeasured:
        print(
            f"FAILED: the audit compare did not measure the trail in {', '.join(unmeasured)} "
            "(AuditEvents written do not match the reads served; see above)"
        )
    for line in scale_out_lines:
        print(line)
    if events_report:
        print("Subscriptions (one active subscription, one worker, local receiver):")
        for line in events_report:
            print(f"  {line}")
    if events_failure:
        print(f"FAILED: the events phase did not complete ({events_failure}; logs above)")
    if len(rss_trace) > 1:
        first, last = rss_trace[0][1], rss_trace[-1][1]
        trail = ", ".join(f"{name} {mb:.0f}" for name, mb in rss_trace)
        growth = f"{100.0 * (last - first) / first:+.0f}%" if first else "n/a"
        print(f"Worker RSS (largest worker, MB) after each phase: {trail} ({growth})")
        within = []
        for name in args.phase_list:
            m = results[name].metrics if name in results else {}
            a, b = m.get("rss_begin_mb"), m.get("rss_end_mb")
            if a and b:
                within.append(f"{name} {a:.0f}->{b:.0f} ({100.0 * (b - a) / a:+.1f}%)")
        if within:
            print("Workers' total RSS over each window, MB: " + ", ".join(within))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "seed_seconds": data.seconds,
                    "pools": bench.pool_notes,
                    "phases": [results[p].summary() for p in args.phase_list if p in results],
                    "targets": checks,
                    "audit_cost": audit_checks,
                    "audit_flush_ms_per_event": {
                        phase: {"cpu": cpu, "wall": wall}
                        for phase, (cpu, wall) in audit_flush.items()
                    },
                    "rss_trace": rss_trace,
                    "round_trips": {
                        k: {
                            "statements": dict(v.statements),
                            "connections": v.checkouts,
                            "transactions": v.transactions,
                            "round_trips": v.round_trips,
                            "redis": v.redis,
                        }
                        for k, v in trips.items()
                    },
                },
                indent=2,
            )
        )
    return 0 if scale_out_ok and not unmeasured and not events_failure else 1


if __name__ == "__main__":
    raise SystemExit(main())
