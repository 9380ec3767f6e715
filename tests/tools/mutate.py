"""`make mutate`: mutation testing of the modules where a wrong answer hurts a patient.

    .venv/bin/python -m tests.tools.mutate [--only lifecycle,access] [--jobs 2] [--list]

For each target module, every operator-level mutant (tests/tools/mutants.py) is loaded
through an import hook — the file on disk is never edited — and the tests that exercise
that module run against it, on SQLite only, stopping at the first failure. A mutant is
killed when a test fails (or the run exceeds its time limit), survives when every test
passes. The table per module, the survivors (file:line, the change) and the score follow;
the exit status is 1 when any module is below its threshold.

A mutant inside a function runs only the tests whose body called that function in the
unmutated run (module-level mutants, and functions called outside a test body, run every
test), and tests that killed earlier mutants run first: see docs/testing.md. `--all-tests`
runs every test in file order instead.

Why not mutmut or cosmic-ray: mutmut 3 mutates only inside functions (through trampolines),
so the module-level tables that carry most of these rules — the role sets, the transition
table, the interaction levels — are never mutated; cosmic-ray needs a session database and
a full interpreter per mutant. Here the interpreter is started once: the third-party
imports are loaded in the parent, and each mutant runs pytest in a forked child, which
costs only the project's own imports.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import pytest

from tests.tools.mutants import Mutant, enums_of, mutants, mutated_code

ROOT = Path(__file__).resolve().parents[2]
#: Every unit test of the CDS (rules, behaviours, resolution, engine, ONC pairs): the rules
#: are pure, so these need no storage. Then the clinical stories on real codes (through the
#: FHIR face, SQLite): reaction history, intolerance, food allergies, unreadable records.
RULE_TESTS = (
    *sorted(
        str(p.relative_to(ROOT))
        for pattern in ("tests/unit/test_cds*.py", "tests/unit/test_onc*.py")
        for p in ROOT.glob(pattern)
    ),
    "tests/clinical/test_real_codes.py",
)


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    tests: tuple[str, ...]
    threshold: float | None
    only: frozenset[str] | None = None

    @property
    def path(self) -> Path:
        return ROOT / (self.module.replace(".", "/") + ".py")


TARGETS: tuple[Target, ...] = (
    Target(
        "lifecycle",
        "app.domain.lifecycle",
        ("tests/unit/test_lifecycle.py", "tests/integration/test_order_service.py"),
        0.95,
    ),
    Target(
        "access",
        "app.domain.access",
        (
            "tests/unit/test_permissions.py",
            "tests/api/test_role_matrix.py",
            "tests/api/test_fhir_access.py",
            "tests/api/test_audit_trail.py",
        ),
        0.95,
    ),
    # every rule module, found on disk: a new rule is mutated (and held to 90%) from day one
    *(
        Target(p.stem, f"app.cds.rules.{p.stem}", RULE_TESTS, 0.90)
        for p in sorted((ROOT / "app" / "cds" / "rules").glob("*.py"))
        if p.stem != "__init__"
    ),
    Target("idempotency", "app.services.idempotency", ("tests/unit/test_idempotency.py",), 0.90),
    Target(
        "orders (order state)",
        "app.services.orders",
        (
            "tests/integration/test_order_service.py",
            "tests/api/test_order_workflow.py",
            "tests/api/test_role_matrix.py",
            # The activation gate (a hard-stop blocks, a warning waits for its acknowledgement)
            # is pinned by the contract and clinical stories, not by the workflow tests above.
            "tests/api/test_legacy_contract.py",
            "tests/api/test_legacy_offline.py",
            "tests/clinical/test_medication_safety.py",
            # FHIR PUT of an order (create with a client id, draft edits, If-Match) is pinned
            # by the CRUD tests; a blank override reason reaches `acknowledge` only through
            # CDS Hooks feedback; the order-sign alert counter is read on /metrics.
            "tests/api/test_fhir_crud.py",
            "tests/api/test_cds_hooks.py",
            "tests/api/test_metrics.py",
        ),
        None,
        only=frozenset(
            {
                "ALREADY_DONE",
                "ACTION_ROLE",
                "OrderService.locate",
                "OrderService.load",
                "OrderService.transition",
                "OrderService._activate",
                "OrderService.acknowledge",
                "OrderService.put_order",
            }
        ),
    ),
)


# ---------------------------------------------------------------------- the import hook
class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module from already-compiled (mutated) code instead of its file."""

    def __init__(self, module: str, code: CodeType, path: Path) -> None:
        self.module, self.code, self.path = module, code, path

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=str(self.path))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = str(self.path)
        exec(self.code, module.__dict__)


class _SqliteOnly:
    """pytest plugin for mutant runs: SQLite only, no live servers (see tests/conftest.py)."""

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        keep, drop = [], []
        for item in items:
            names = set(getattr(item, "fixturenames", ()))
            slow = item.get_closest_marker("slow") is not None
            (drop if slow or names & {"pg_app", "live_server"} else keep).append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=drop)


class _KillersFirst:
    """pytest plugin for mutant runs: the tests that killed earlier mutants of this target run
    first (most kills first), the rest in file order; the first failure is written to
    `report`, so the next mutants try it early. A mutant stops at its first failure (-x), so
    a killed mutant usually costs one test instead of the tests before its killer."""

    def __init__(self, first: list[str], report: Path | None) -> None:
        self.rank = {nodeid: i for i, nodeid in enumerate(first)}
        self.report = report

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        if self.rank:
            last = len(self.rank)
            items.sort(key=lambda item: self.rank.get(item.nodeid, last))  # stable

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and self.report is not None and not self.report.exists():
            self.report.write_text(report.nodeid)


class _Calls:
    """pytest plugin for the unmutated run: which functions of the target each test calls.

    A call made while no test body runs (imports, collection, any fixture's setup or
    teardown — a session fixture's result is shared by later tests) makes that function
    *shared*: its mutants run every test. Threads started during the run are profiled too.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.current: str | None = None
        self.called: dict[str, set[str]] = {}
        self.shared: set[str] = set()
        self.nodeids: list[str] = []

    def _profile(self, frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == self.path:
            name = frame.f_code.co_qualname
            if self.current is None:
                self.shared.add(name)
            else:
                self.called.setdefault(self.current, set()).add(name)

    def start(self) -> None:
        sys.setprofile(self._profile)
        threading.setprofile(self._profile)

    def pytest_collection_finish(self, session: Any) -> None:
        self.nodeids = [item.nodeid for item in session.items]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: Any) -> Any:
        self.current = item.nodeid
        try:
            yield
        finally:
            self.current = None

    def answer(self) -> dict[str, Any]:
        return {
            "nodeids": self.nodeids,
            "called": {k: sorted(v) for k, v in self.called.items()},
            "shared": sorted(self.shared),
        }


def function_of(source: str, line: int) -> str | None:
    """The qualified name of the function whose body holds `line` (None: module or class
    level, which runs at import). Methods are `Class.method`, as `co_qualname` names them."""
    found: str | None = None

    def walk(nodes: list[ast.stmt], prefix: str) -> None:
        nonlocal found
        for node in nodes:
            if isinstance(node, ast.ClassDef):
                walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{node.name}"
                if node.body[0].lineno <= line <= (node.end_lineno or 0):
                    found = name  # the outermost function: its code runs whatever is inside
                    return

    walk(ast.parse(source).body, "")
    return found


def tests_for(coverage: dict[str, Any] | None, function: str | None) -> list[str] | None:
    """The tests a mutant of `function` must run, in their original order: every test when
    the mutant is at module level or in a shared function (None), else the tests that
    called the function (or code nested in it)."""
    if coverage is None or function is None:
        return None
    nested = function + "."
    if any(n == function or n.startswith(nested) for n in coverage["shared"]):
        return None
    called = coverage["called"]
    return [
        t
        for t in coverage["nodeids"]
        if any(n == function or n.startswith(nested) for n in called.get(t, ()))
    ]


# ---------------------------------------------------------------------- running
@dataclass
class Result:
    target: Target
    total: int = 0
    killed: int = 0
    survivors: list[Mutant] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return self.killed / self.total if self.total else 1.0


def _pytest_args(target: Target, *, quick: bool, tests: list[str] | None = None) -> list[str]:
    # Plain asserts and no third-party plugins (PYTEST_DISABLE_PLUGIN_AUTOLOAD, set in main):
    # a mutant needs pass/fail only, and rewriting hypothesis and schemathesis on import
    # cost more than the tests themselves.
    args = [*(target.tests if tests is None else tests), "-q", "-p", "no:cacheprovider"]
    args += ["--assert=plain"]
    args += ["-o", "addopts=--strict-markers"]
    return [*args, "-x", "--no-header", "--tb=no"] if quick else args


def _child(
    target: Target,
    index: int | None,
    quiet: bool,
    tests: list[str] | None,
    calls: _Calls | None,
    order: _KillersFirst | None,
) -> int:
    """In a forked child: install the mutant (None: none), run the tests (None: all of the
    target's), return pytest's code. `calls` records what each test calls (unmutated run)."""
    if index is not None:
        source = target.path.read_text()
        code, _m = mutated_code(source, str(target.path), index, _enums(), target.only)
        sys.meta_path.insert(0, _MutantFinder(target.module, code, target.path))
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    plugins: list[Any] = [_SqliteOnly()]
    if order is not None:
        plugins.append(order)
    if calls is not None:
        plugins.append(calls)
        calls.start()
    return int(pytest.main(_pytest_args(target, quick=True, tests=tests), plugins=plugins))


def _app_imports() -> dict[str, set[str]]:
    """`{app module: app modules it imports when it is imported}` (imports inside functions
    run later, in the child, where the import hook is in place)."""
    graph: dict[str, set[str]] = {}
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "app").rglob("*.py")
    }
    for name, path in modules.items():
        found: set[str] = set()
        for node in _module_level(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        found.add(name)  # importing a module imports its packages first
        parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}
        graph[name] = (found | parents) & set(modules) - {name}
    return graph


def _module_level(tree: ast.AST) -> list[ast.AST]:
    found: list[ast.AST] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        found.append(node)
        found.extend(_module_level(node))
    return found


def _independent_of(module: str) -> list[str]:
    """App modules that import `module` neither directly nor through others: safe to import
    before the mutant is installed."""
    graph = _app_imports()
    tainted = {module}
    changed = True
    while changed:
        changed = False
        for name, deps in graph.items():
            if name not in tainted and deps & tainted:
                tainted.add(name)
                changed = True
    return sorted(set(graph) - tainted)


def _warm_for(target: Target) -> None:
    """In a target's zygote: import what the mutants of this target share."""
    for name in _independent_of(target.module):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    if target.module in sys.modules:  # the import graph missed a path: never test the original
        print(f"mutate: warming {target.name} imported {target.module}", file=sys.stderr)
        raise SystemExit(2)


def _fork(
    target: Target,
    index: int | None,
    quiet: bool = True,
    tests: list[str] | None = None,
    record: Path | None = None,
    order: _KillersFirst | None = None,
) -> int:
    """Fork one pytest run; with `record`, the unmutated run writes what each test calls."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setpgid(0, 0)
            calls = _Calls(target.path) if record is not None else None
            code = _child(target, index, quiet, tests, calls, order)
            if calls is not None and record is not None:
                sys.setprofile(None)
                record.write_text(json.dumps(calls.answer()))
        finally:
            os._exit(code)
    return pid


def _enums() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for target in TARGETS:
        found.update(enums_of(target.path.read_text()))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _run_pool(
    jobs: list[tuple[Target, int, list[str] | None]],
    workers: int,
    limits: dict[str, float],
    killers_first: bool = True,
) -> dict[tuple[str, int], bool]:
    """Run every (target, mutant, tests) job, `workers` at a time: {(target, index): killed}.
    A mutant whose code no test reaches survives without a run (tests == [])."""
    killed: dict[tuple[str, int], bool] = {}
    kills: dict[str, int] = {}  # test nodeid: mutants it killed
    reports = Path(tempfile.mkdtemp(prefix="mutate-"))
    for target, index, tests in jobs:
        if tests == []:
            killed[(target.name, index)] = False
    pending = [(t, i, tests) for t, i, tests in jobs if tests != []]
    running: dict[int, tuple[Target, int, float]] = {}
    done = len(killed)
    while pending or running:
        while pending and len(running) < workers:
            target, index, tests = pending.pop(0)
            order = None
            if killers_first:
                first = sorted(kills, key=lambda n: -kills[n])
                order = _KillersFirst(first, reports / f"{target.name}-{index}")
            pid = _fork(target, index, tests=tests, order=order)
            running[pid] = (target, index, time.monotonic())
        time.sleep(0.05)
        for pid, (target, index, started) in list(running.items()):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                code = os.waitstatus_to_exitcode(status)
                if code not in (0, 1):
                    print(f"  {target.name} mutant {index}: pytest exit {code}", file=sys.stderr)
                killed[(target.name, index)] = code != 0
                report = reports / f"{target.name}-{index}"
                if report.exists():
                    killer = report.read_text()
                    kills[killer] = kills.get(killer, 0) + 1
                    report.unlink()
            elif time.monotonic() - started > limits[target.name]:
                _kill(pid)
                killed[(target.name, index)] = True  # a mutant that hangs is caught by timeouts
            else:
                continue
            del running[pid]
            done += 1
            if done % 25 == 0 or not (pending or running):
                print(f"  {done}/{len(jobs)} mutants run", file=sys.stderr, flush=True)
    shutil.rmtree(reports, ignore_errors=True)
    return killed


def _run_target(
    target: Target, found: list[Mutant], workers: int, select: bool = True
) -> dict[int, bool] | None:
    """In a forked zygote that has imported everything the mutants share: run the tests once
    unmutated, recording what each test calls (they must pass; their time sets the limit per
    mutant), then every mutant against the tests that reach its code (`select`; else all).
    `{index: killed}`, or None when the unmutated tests fail."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        answer: dict[str, Any] = {"ok": False}
        try:
            _warm_for(target)
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:
                record = Path(tmp) / "calls.json"
                _pid, status = os.waitpid(_fork(target, None, quiet=False, record=record), 0)
                ok = os.waitstatus_to_exitcode(status) == 0
                coverage = json.loads(record.read_text()) if ok and select else None
            if ok:
                limit = max(30.0, 4 * (time.monotonic() - t0))
                print(f"mutate: {target.name}: {len(found)} mutants", file=sys.stderr)
                source = target.path.read_text()
                jobs = [
                    (target, m.index, tests_for(coverage, function_of(source, m.line)))
                    for m in found
                ]
                killed = _run_pool(jobs, workers, {target.name: limit}, killers_first=select)
                answer = {
                    "ok": True,
                    "killed": {str(m.index): killed[(target.name, m.index)] for m in found},
                }
        finally:
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(answer))
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = json.loads(pipe.read() or '{"ok": false}')
    os.waitpid(pid, 0)
    if not answer["ok"]:
        return None
    return {int(i): bool(k) for i, k in answer["killed"].items()}


def _warm_imports() -> None:
    """Import in this (parent) process every third-party module the tests import, so each
    forked child pays only for the project's own modules. App and test modules stay out:
    a child must import them fresh, through the mutant's import hook."""
    probe = (
        "import sys, json, pytest\nimport tests.conftest\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "TEST_BACKENDS": "sqlite"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    for name in json.loads(out.stdout.strip().splitlines()[-1]):
        if name.split(".")[0] in {"app", "tests", "__main__"}:
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated target names (default: all)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")))
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--all-tests",
        action="store_true",
        help="run every test of the target, in file order, for each mutant (no selection by "
        "what tests call, no killers first): slower, for checking the selection",
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    os.environ["TEST_BACKENDS"] = "sqlite"
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    by_name = {t.name: t for t in TARGETS}
    targets = [by_name[n] for n in args.only.split(",")] if args.only else list(TARGETS)
    enums = _enums()
    found = {t.name: mutants(t.path.read_text(), enums, t.only) for t in targets}
    if args.list:
        for t in targets:
            for m in found[t.name]:
                print(f"{t.name}\t{m.index}\t{t.path.relative_to(ROOT)}:{m.line}\t{m.description}")
        return 0

    started = time.monotonic()
    _warm_imports()
    killed: dict[tuple[str, int], bool] = {}
    for t in targets:
        outcome = _run_target(t, found[t.name], max(1, args.jobs), select=not args.all_tests)
        if outcome is None:
            print(f"mutate: the tests of {t.name} fail without any mutant", file=sys.stderr)
            return 2
        killed.update(((t.name, i), k) for i, k in outcome.items())
        gone = [m for m in found[t.name] if not outcome[m.index]]
        score = 1 - len(gone) / len(found[t.name]) if found[t.name] else 1.0
        print(f"mutate: {t.name}: {score:.1%}, {len(gone)} survivors", file=sys.stderr)
        for m in gone:
            print(f"  {t.path.relative_to(ROOT)}:{m.line}  {m.description}", file=sys.stderr)
        sys.stderr.flush()

    results = []
    for t in targets:
        r = Result(t, total=len(found[t.name]))
        for m in found[t.name]:
            if killed[(t.name, m.index)]:
                r.killed += 1
            else:
                r.survivors.append(m)
        results.append(r)
    return _report(results, time.monotonic() - started)


def _report(results: list[Result], seconds: float) -> int:
    failing = []
    print()
    print("| module | mutants | killed | score | threshold | survivors |")
    print("|---|---|---|---|---|---|")
    for r in results:
        t = r.target
        need = f"{t.threshold:.0%}" if t.threshold is not None else "—"
        below = t.threshold is not None and r.score < t.threshold
        if below:
            failing.append(t.name)
        mark = " **below**" if below else ""
        print(
            f"| `{t.path.relative_to(ROOT)}`{' (' + t.name + ')' if t.only else ''} "
            f"| {r.total} | {r.killed} | {r.score:.1%}{mark} | {need} | {len(r.survivors)} |"
        )
    for r in results:
        if r.survivors:
            print(f"\nSurvivors in {r.target.path.relative_to(ROOT)}:")
            for m in r.survivors:
                print(f"  {r.target.path.relative_to(ROOT)}:{m.line}  {m.description}")
    print(f"\nmutate: {seconds / 60:.1f} min")
    if failing:
        print(f"mutate: below threshold: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
