"""Summarise py-spy "raw" (collapsed stack) profiles: where the workers' CPU goes.

Usage: .venv/bin/python -m benchmarks.profile_summary FILE [FILE ...] [--top 25]

`benchmarks.run --profile DIR` records one file per worker per phase with
`py-spy record --gil --format raw` (samples only the thread holding the GIL, i.e. Python CPU
time, not time spent waiting for PostgreSQL). Each line is `frame;frame;…;leaf count`.
Inclusive share: the fraction of samples whose stack contains the frame or category.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")

#: (label, substrings; a frame matching any one counts). Inclusive: categories can nest.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("token verification (authlib RS256)", ("verify_token (",)),
    ("FHIR validation (fhir.resources / pydantic)", ("validate_resource (",)),
    ("legacy schema load (marshmallow)", ("marshmallow/",)),
    ("CDS: context searches", ("_context (app/services/orders.py",)),
    ("CDS: rules (engine.evaluate)", ("evaluate (app/cds/engine.py",)),
    ("search-index extraction", ("app/store/search/extract.py",)),
    ("Provenance writes", ("record (app/services/provenance.py",)),
    ("SQLAlchemy (all)", ("sqlalchemy/",)),
    ("  SQL compilation", ("sqlalchemy/sql/compiler.py",)),
    ("  ORM session / unit of work", ("sqlalchemy/orm/",)),
    ("  connection pool (checkout, pre-ping, reset)", ("sqlalchemy/pool/",)),
    ("psycopg (driver)", ("psycopg/",)),
    ("commit", ("commit (sqlalchemy/orm/session.py",)),
    ("logging (JSON access log)", ("logging/__init__.py", "pythonjsonlogger/")),
    ("Flask / Werkzeug request handling", ("flask/", "werkzeug/")),
    ("gunicorn (HTTP parsing, socket I/O)", ("gunicorn/",)),
    ("granian (WSGI glue; its HTTP is Rust, outside these samples)", ("granian/",)),
    ("Redis client", ("redis/",)),
    ("stdlib json", ("json/decoder.py", "json/encoder.py", "json/__init__.py")),
    ("deepcopy", ("copy.py",)),
]


#: Self time by package: a sample belongs to the package of its innermost (leaf) frame.
PACKAGES: list[tuple[str, tuple[str, ...]]] = [
    ("psycopg (driver, C and Python)", ("psycopg/", "psycopg_binary/")),
    ("SQLAlchemy (Core + ORM session)", ("sqlalchemy/",)),
    ("authlib + cryptography (JWT)", ("authlib/", "cryptography/")),
    ("fhir.resources + pydantic (validation)", ("fhir/resources/", "fhir_core/", "pydantic")),
    ("marshmallow (legacy schemas)", ("marshmallow/",)),
    ("logging + python-json-logger", ("logging/", "pythonjsonlogger/")),
    ("Flask + Werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn", ("gunicorn/",)),
    ("granian (Python part)", ("granian/",)),
    ("redis-py", ("redis/",)),
    ("application code (app/)", ("(app/",)),
]


def _package(frame: str) -> str:
    for label, needles in PACKAGES:
        if any(needle in frame for needle in needles):
            return label
    return "stdlib and other (socket, threading, json, uuid, ...)"


def _frame_key(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def load(paths: Iterable[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            m = _LINE.match(line.strip())
            if not m:
                continue
            frames = tuple(_frame_key(f) for f in m.group("stack").split(";") if f)
            stacks[frames] += int(m.group("count"))
    return stacks


def summarise(stacks: Counter[tuple[str, ...]], top: int = 20) -> str:
    total = sum(stacks.values())
    if not total:
        return "  (no samples)"
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    for frames, n in stacks.items():
        for key in set(frames):
            inclusive[key] += n
        if frames:
            leaf[frames[-1]] += n
        joined = "\n".join(frames)
        for label, needles in CATEGORIES:
            if any(needle in joined for needle in needles):
                cats[label] += n
    packages: Counter[str] = Counter()
    for frames, n in stacks.items():
        packages[_package(frames[-1]) if frames else "?"] += n
    out = [f"  samples: {total} (py-spy --gil: Python CPU of the workers)"]
    out.append("  self time by package (leaf frame; sums to 100%):")
    for label, n in packages.most_common():
        out.append(f"    {100.0 * n / total:5.1f}%  {label}")
    out.append("  by category (inclusive):")
    for label, _ in CATEGORIES:
        if cats[label]:
            out.append(f"    {100.0 * cats[label] / total:5.1f}%  {label}")
    app_frames = [(k, n) for k, n in inclusive.most_common() if " (app/" in k]
    out.append(f"  top {top} app frames (inclusive):")
    for key, n in app_frames[:top]:
        out.append(f"    {100.0 * n / total:5.1f}%  {key}")
    skip = (
        "click/",
        "gunicorn/",
        "granian/",
        "flask/app.py",
        "threading.py",
        "concurrent/futures",
        "<module>",
    )
    lib_frames = [
        (k, n)
        for k, n in inclusive.most_common()
        if " (app/" not in k and not any(s in k for s in skip)
    ]
    out.append("  top 15 library frames (inclusive):")
    for key, n in lib_frames[:15]:
        out.append(f"    {100.0 * n / total:5.1f}%  {key}")
    out.append("  top 12 leaf frames (self time):")
    for key, n in leaf.most_common(12):
        out.append(f"    {100.0 * n / total:5.1f}%  {key}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(load(args.files), args.top))


if __name__ == "__main__":
    main()
