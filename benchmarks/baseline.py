"""Another commit of this repository, built to be benchmarked against this checkout (A/B).

`build(REF)` exports the commit's tree (`git archive`, so nothing is registered in the
repository and a fresh clone works) into `.bench/<sha>/src`, makes it a virtualenv of its
own (`.bench/<sha>/venv`, the project installed editable with the same base interpreter as
ours) and caches both: the second run against the same commit starts at once. The cache key
is the commit id, so a branch name that moves gets a new build.

The benchmark's own seeding code (benchmarks/seed.py, seed_worker.py) is copied next to it
(`.bench/<sha>/harness`) on every run, so the baseline's database is seeded by this
checkout's data generator through the baseline's own repository: the same data shape,
written by the code that owns that schema.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
#: What the seeding worker needs of this checkout's benchmarks package.
HARNESS_FILES = ("__init__.py", "seed.py", "seed_worker.py")


@dataclass(frozen=True)
class Build:
    ref: str
    sha: str
    src: Path
    python: Path
    harness: Path

    @property
    def script(self) -> list[str]:
        return [str(self.python.parent / "orders-service")]

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.sha[:9]})" if not self.sha.startswith(self.ref) else self.sha[:9]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def resolve(ref: str) -> str:
    try:
        return _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository") from exc


def head_label() -> str:
    """This checkout: its commit, marked when the work tree has changes on top."""
    sha = _git("rev-parse", "--short=9", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}{' + changes' if dirty else ''}"


def build(ref: str) -> Build:
    sha = resolve(ref)
    base = CACHE / sha
    src, venv, stamp = base / "src", base / "venv", base / ".built"
    python = venv / "bin" / "python"
    if not stamp.exists():
        started = time.perf_counter()
        print(f"building the baseline {ref} ({sha[:9]}) in {base} (cached afterwards)")
        shutil.rmtree(base, ignore_errors=True)
        src.mkdir(parents=True)
        archive = subprocess.Popen(["git", "archive", sha], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {sha} failed")
        interpreter = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        install = subprocess.run(
            [*pip, "--no-input", "-e", str(src)],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            raise SystemExit(f"installing the baseline failed:\n{install.stderr[-3000:]}")
        stamp.write_text(sha + "\n")
        print(f"baseline built in {time.perf_counter() - started:.0f}s")
    harness = base / "harness" / "benchmarks"
    harness.mkdir(parents=True, exist_ok=True)
    for name in HARNESS_FILES:
        shutil.copyfile(ROOT / "benchmarks" / name, harness / name)
    return Build(ref, sha, src, python, harness.parent)
