"""Count what one request of each phase costs in database and Redis round trips.

The same operations the load phases send (benchmarks.run.Bench) are replayed once, in this
process, against an app built by `create_app` on the benchmark database, with SQLAlchemy
and Redis instrumented. One round trip per statement (an executemany is one: it is a single
multi-row INSERT or a pipeline), plus, per transaction, the `BEGIN` and `COMMIT`/`ROLLBACK`
that psycopg sends. Read-only units of work run in autocommit (no BEGIN/COMMIT), and the pool
pings a connection only after it sat idle (app/db.py), which never happens under load: both
are counted as they happen.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask import Flask


@dataclass
class Counts:
    statements: Counter[str] = field(default_factory=Counter)
    checkouts: int = 0
    transactions: int = 0
    redis: int = 0

    @property
    def total_statements(self) -> int:
        return sum(self.statements.values())

    @property
    def round_trips(self) -> int:
        """Statements + per transaction: BEGIN, COMMIT/ROLLBACK."""
        return self.total_statements + 2 * self.transactions

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self.statements.most_common())
        return (
            f"{self.total_statements} SQL statements ({kinds}) on {self.checkouts} "
            f"connection(s), {self.transactions} transaction(s) = {self.round_trips} DB round "
            f"trips; {self.redis} Redis commands"
        )


class FlaskClient:
    """The HttpClient interface (benchmarks.load) over Flask's test client."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        resp = self.client.open(path, method=method, data=body, headers=headers or {})
        return resp.status_code, resp.headers, resp.get_data()

    def close(self) -> None:
        pass


class Counter_:
    """Instruments an app's engine and Redis client; `measure(fn)` counts one call."""

    def __init__(self, settings: Any) -> None:
        from sqlalchemy import event

        from app import create_app
        from app.runtime import Runtime

        self.app = create_app(settings)
        logging.getLogger("app.access").setLevel(logging.WARNING)
        runtime: Runtime = self.app.extensions["orders"]
        self.runtime = runtime
        self.counts = Counts()
        event.listen(runtime.engine, "before_cursor_execute", self._statement)
        event.listen(runtime.engine.pool, "checkout", self._checkout)
        event.listen(runtime.engine, "begin", self._begin)
        redis_client = getattr(runtime.cache, "_client", None) or getattr(
            runtime.cache, "client", None
        )
        if redis_client is not None:
            original = redis_client.execute_command

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.counts.redis += 1
                return original(*args, **kwargs)

            redis_client.execute_command = counted

    def _statement(self, _c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        words = statement.lstrip().split(None, 2)
        kind = words[0].upper() if words else "?"
        if kind in ("INSERT", "UPDATE", "DELETE") and len(words) > 1:
            target = words[2].split(None, 1)[0] if kind != "UPDATE" else words[1]
            kind = f"{kind} {target}"
        elif kind == "WITH" and "jsonb_populate_recordset" in statement:
            kind = "INSERT all tables (one flush statement)"
        elif kind == "SELECT" and statement.lower().startswith("select count("):
            kind = "SELECT count"
        elif kind == "SELECT" and " count(" in statement.lower():
            kind = "SELECT page + total"
        self.counts.statements[kind] += 1

    def _checkout(self, *_args: Any) -> None:
        self.counts.checkouts += 1

    def _begin(self, conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self.counts.transactions += 1

    def client(self) -> FlaskClient:
        return FlaskClient(self.app)

    def measure(self, op: Any) -> tuple[Counts, tuple[bool, str, str | None]]:
        self.counts = Counts()
        outcome = op()
        return self.counts, outcome

    def close(self) -> None:
        self.runtime.close()
