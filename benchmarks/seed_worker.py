"""Seeds one build's database with that build's own code, on request (A/B runs).

    <that build's python> -m benchmarks.seed_worker      (cwd: a folder holding this package)

Reads one JSON request per line on stdin and answers one JSON line on stdout:
`{"op": "seed", ...}` (the data set: benchmarks.seed.seed), `{"op": "drafts", "n", "prefix"}`,
`{"op": "cds_patients", "n"}`, `{"op": "token", ...}` (a development token minted with that
build's instance key). The database, Redis and instance folder come from the environment
(`DATABASE_URL`, `REDIS_URL`, `ORDERS_INSTANCE_PATH`), read by that build's `Settings`.

The parent side of the protocol is `Worker`: it imports nothing of `app`, so one process can
drive workers of different builds.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any


def _serve(out: IO[str]) -> None:
    import random

    from app.auth.devkeys import mint_token
    from app.db import make_engine
    from app.settings import Settings
    from benchmarks import seed as seeding

    settings = Settings.from_env()
    engine = make_engine(settings)
    data: seeding.Dataset | None = None
    rng = random.Random(0)

    def handle(req: dict[str, Any]) -> Any:
        nonlocal data, rng
        op = req.pop("op")
        if op == "seed":
            rng = random.Random(req["seed"] + 1)  # the pools' generator, as in a plain run
            data = seeding.seed(
                engine,
                req["tenant"],
                scale=req["scale"],
                hot=req["hot"],
                patients=req["patients"],
                rng=random.Random(req["seed"]),
            )
            return dataclasses.asdict(data)
        if op == "drafts":
            assert data is not None, "seed first"
            made = seeding.drafts(engine, data, req["n"], req["prefix"], rng)
            return [[d.id, d.content] for d in made]
        if op == "cds_patients":
            assert data is not None, "seed first"
            return seeding.cds_patients(engine, data.tenant, req["n"])
        if op == "token":
            return mint_token(settings, **req)
        raise ValueError(f"unknown op {op!r}")

    for line in sys.stdin:
        try:
            answer = {"ok": True, "result": handle(json.loads(line))}
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    engine.dispose()


class Worker:
    """A seeding worker of one build (its interpreter, its code), driven from here."""

    def __init__(self, python: Path | str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(
            [str(python), "-m", "benchmarks.seed_worker"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def call(self, op: str, **kwargs: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the seeding worker exited ({self.proc.wait()}); see {self._log.name}"
            )
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"seeding worker, {op}:\n{answer['error']}")
        return answer["result"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class WorkerSeeder:
    """benchmarks.phases.Seeder over a Worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def drafts(self, n: int, prefix: str) -> list[Any]:
        from benchmarks.seed import Draft

        return [
            Draft(rid, content) for rid, content in self.worker.call("drafts", n=n, prefix=prefix)
        ]

    def cds_patients(self, n: int) -> list[tuple[str, str]]:
        return [(p, e) for p, e in self.worker.call("cds_patients", n=n)]


if __name__ == "__main__":
    _protocol = sys.stdout
    sys.stdout = sys.stderr  # anything the app prints must not break the protocol
    _serve(_protocol)
