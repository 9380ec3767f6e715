"""Pooled PostgreSQL connections that die while idle, autocommit reads, and a unit of work
that cannot get (or loses) its connection: always 503 + Retry-After, never a 500.

app/db.py pings a pooled connection at checkout only when it sat idle longer than
`ping_after_idle_seconds`; a dead one is replaced before the request sees it. A dead
connection that is not pinged fails the request with 503 + Retry-After (never 500) and
invalidates the pool, so the next request gets a fresh connection. GETs run in autocommit.

These tests kill every backend of their database from an admin connection, so they run on a
database of their own (`<TEST_PG_DB>_conn`): terminating the backends of the shared test
database would also kill the pooled connections of the session-wide `app` fixture.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from ulid import ULID

from app import create_app
from app.auth import Principal
from app.auth.devkeys import mint_token
from app.errors import ServiceUnavailable, ValidationFailed
from app.migrate import upgrade
from app.runtime import get_runtime
from app.services.unit_of_work import UnitOfWork
from app.settings import Settings
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB, REDIS_TEST_URL
from tests.fhir_data import patient

DB_NAME = f"{PG_TEST_DB}_conn"
TERMINATE = (
    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)

AppFactory = Callable[..., Flask]


def _db_url(driver: str = "postgresql") -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", f"{driver}://", 1)
    return f"{base}/{DB_NAME}"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    yield _db_url("postgresql+psycopg")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


@pytest.fixture
def make_app(database: str, tmp_path: Path) -> Iterator[AppFactory]:
    made: list[Flask] = []

    def make(**extra: Any) -> Flask:
        settings = Settings(
            instance_path=tmp_path / f"instance-{len(made)}",
            database_url=database,
            redis_url=REDIS_TEST_URL,
            extra={"pool_size": 5, "max_overflow": 5, **extra},
        )
        flask_app = create_app(settings)
        with flask_app.app_context():
            upgrade(get_runtime().engine)
        made.append(flask_app)
        return flask_app

    yield make
    for flask_app in made:
        with flask_app.app_context():
            get_runtime().close()


def _headers(flask_app: Flask) -> dict[str, str]:
    tenant = f"t-{ULID()}".lower()
    settings: Settings = flask_app.config["SETTINGS"]
    token = mint_token(settings, roles=("ADMIN",), tenants=(tenant,))
    return {
        "Authorization": f"Bearer {token}",
        "X-Tenant-ID": tenant,
        "Content-Type": "application/fhir+json",
    }


def _engine(flask_app: Flask) -> Engine:
    with flask_app.app_context():
        return get_runtime().engine


def _fill_pool(flask_app: Flask, n: int) -> None:
    """Leave `n` live connections idle in the pool."""
    engine = _engine(flask_app)
    conns = [engine.connect() for _ in range(n)]
    for conn in conns:
        conn.exec_driver_sql("SELECT 1")
        conn.rollback()
    for conn in conns:
        conn.close()


def _terminate_backends() -> int:
    """Kill every other connection to the test database; how many were killed."""
    with psycopg.connect(_db_url(), autocommit=True) as admin:
        killed = admin.execute(TERMINATE).fetchall()
    return sum(1 for (ok,) in killed if ok)


def _backend_states() -> list[str]:
    with psycopg.connect(_db_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [state for (state,) in rows]


def _create_patient(client: FlaskClient, hdrs: dict[str, str]) -> str:
    r = client.post("/fhir/R4/Patient", json=patient(), headers=hdrs)
    assert r.status_code == 201 and r.json is not None, r.json
    return str(r.json["id"])


def _assert_503(r: Any) -> None:
    assert r.status_code == 503, (r.status_code, r.json)
    assert r.headers.get("Retry-After"), "a 503 must tell the client when to retry"
    assert r.json["issue"][0]["details"]["coding"][0]["code"] == "SERVICE_UNAVAILABLE"


# --------------------------------------------------------------------------- idle ping
def test_an_idle_ping_replaces_connections_the_database_killed(make_app: AppFactory) -> None:
    flask_app = make_app(ping_after_idle_seconds=0)
    client, hdrs = flask_app.test_client(), _headers(flask_app)
    pid = _create_patient(client, hdrs)
    _fill_pool(flask_app, 3)
    assert _terminate_backends() >= 3, "the pool should have held live connections to kill"
    time.sleep(0.05)  # idle longer than 0 s, whatever the clock's resolution

    got = client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs)
    assert got.status_code == 200, ("the ping must replace the dead connection", got.json)
    assert client.post("/fhir/R4/Patient", json=patient(), headers=hdrs).status_code == 201
    # Regression: the ping opened a transaction on a live pooled connection; a GET (autocommit)
    # then failed with "can't change autocommit now: connection in transaction status INTRANS".
    for _ in range(6):  # cycle through every pooled connection, each pinged at checkout
        time.sleep(0.01)
        got = client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs)
        assert got.status_code == 200, ("a GET after a ping must work", got.json)
        found = client.get("/fhir/R4/Patient", headers=hdrs)
        assert found.status_code == 200, found.json
        assert client.post("/fhir/R4/Patient", json=patient(), headers=hdrs).status_code == 201
    assert "idle in transaction" not in _backend_states(), (
        "a pinged connection was handed back to the pool inside a transaction"
    )


# --------------------------------------------------------------------------- no ping
@pytest.mark.parametrize("first", ["GET", "POST"])
def test_a_dead_connection_without_a_ping_is_503_once_then_recovers(
    make_app: AppFactory, first: str
) -> None:
    flask_app = make_app(ping_after_idle_seconds=3600)
    client, hdrs = flask_app.test_client(), _headers(flask_app)
    pid = _create_patient(client, hdrs)
    _fill_pool(flask_app, 3)  # several dead connections: the disconnect must drop them all
    assert _terminate_backends() >= 3, "the pool should have held live connections to kill"

    if first == "GET":
        r = client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs)
    else:
        r = client.post("/fhir/R4/Patient", json=patient(), headers=hdrs)
    _assert_503(r)

    # The disconnect invalidated the whole pool: no further request sees a dead connection.
    for _ in range(4):
        got = client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs)
        assert got.status_code == 200, ("the pool must have been invalidated", got.json)
        assert client.post("/fhir/R4/Patient", json=patient(), headers=hdrs).status_code == 201


# --------------------------------------------------------------------------- autocommit reads
def test_fhir_reads_run_in_autocommit_and_writes_do_not(make_app: AppFactory) -> None:
    flask_app = make_app()
    client, hdrs = flask_app.test_client(), _headers(flask_app)
    engine = _engine(flask_app)
    begins: list[str | None] = []
    driver_autocommit: list[bool] = []
    # The test client serves each request on this thread. The audit trail's flusher writes
    # buffered read events in a transaction of its own, on its own thread, whenever its
    # period comes round: those are not the request's statements.
    requests_thread = threading.get_ident()

    def on_begin(conn: Any) -> None:
        if threading.get_ident() == requests_thread:
            begins.append(conn.get_execution_options().get("isolation_level"))

    def on_execute(conn: Any, *_args: Any) -> None:
        if threading.get_ident() == requests_thread:
            driver_autocommit.append(bool(conn.connection.dbapi_connection.autocommit))

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        pid = _create_patient(client, hdrs)
        assert begins, "a POST must begin a transaction"
        assert "AUTOCOMMIT" not in begins, f"a POST ran in autocommit: {begins}"
        assert driver_autocommit and not any(driver_autocommit)

        for url in (f"/fhir/R4/Patient/{pid}", "/fhir/R4/Patient", f"/fhir/R4/Patient/{pid}"):
            begins.clear()
            driver_autocommit.clear()
            r = client.get(url, headers=hdrs)
            assert r.status_code == 200, r.json
            assert begins, f"GET {url} opened no unit of work"
            assert all(level == "AUTOCOMMIT" for level in begins), (url, begins)
            assert driver_autocommit and all(driver_autocommit), (
                f"GET {url} sent statements outside autocommit"
            )

        begins.clear()
        driver_autocommit.clear()
        r = client.put(f"/fhir/R4/Patient/{pid}", json=patient(pid, gender="female"), headers=hdrs)
        assert r.status_code == 200, r.json
        assert begins and "AUTOCOMMIT" not in begins, f"a PUT ran in autocommit: {begins}"
        assert not any(driver_autocommit)
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_execute)


# --------------------------------------------------------------------------- no connection
def test_an_exhausted_pool_is_503_with_retry_after(make_app: AppFactory) -> None:
    flask_app = make_app(pool_size=1, max_overflow=0)
    client, hdrs = flask_app.test_client(), _headers(flask_app)
    pid = _create_patient(client, hdrs)
    held = _engine(flask_app).connect()
    try:
        started = time.monotonic()
        _assert_503(client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs))
        _assert_503(client.post("/fhir/R4/Patient", json=patient(), headers=hdrs))
        assert time.monotonic() - started < 30, "a pool timeout must fail fast"
    finally:
        held.close()
    assert client.get(f"/fhir/R4/Patient/{pid}", headers=hdrs).status_code == 200


def test_a_connection_lost_before_an_app_error_is_not_a_500(make_app: AppFactory) -> None:
    """The database goes away while a unit of work is open, and the use case then fails with
    an AppError before touching the database again: `__exit__` rolls back on the dead
    connection. The caller must get the AppError or ServiceUnavailable (400/503), not the raw
    OperationalError of the failed ROLLBACK (which the faces answer with 500)."""
    flask_app = make_app(ping_after_idle_seconds=3600)
    tenant = f"t-{ULID()}".lower()
    who = Principal("conn-test", tenant, frozenset({"ADMIN"}), frozenset({tenant}))
    with flask_app.app_context():
        raised: BaseException | None = None
        try:
            with UnitOfWork(get_runtime().database, who) as uow:
                assert uow.repo.read("Patient", "nobody") is None
                assert _terminate_backends() >= 1
                raise ValidationFailed("the use case rejects the request")
        except BaseException as exc:
            raised = exc
        assert isinstance(raised, ValidationFailed | ServiceUnavailable), (
            "APP BUG (app/services/unit_of_work.py UnitOfWork.__exit__): the rollback on a "
            "connection the database dropped raised an untranslated "
            f"{type(raised).__name__} ({raised}) that replaced the use case's error; the "
            "request would answer 500 instead of 400/503"
        )
        with UnitOfWork(get_runtime().database, who) as uow:  # and the pool recovered
            assert uow.repo.read("Patient", "nobody") is None


def test_sqlite_lock_timeout_at_begin_is_503_and_releases_the_connection(
    tmp_path: Path,
) -> None:
    """On SQLite `UnitOfWork.__enter__` takes the write lock (BEGIN IMMEDIATE). When another
    writer holds it past the busy timeout, the request must answer 503 + Retry-After and the
    pooled connection must go back to the pool at once. (The busy timeout is 30 s; this test sets the
    pooled connection's to 0 so the same error arrives at once.)"""
    db_file = tmp_path / "locked.db"
    flask_app = create_app(Settings(instance_path=tmp_path, database_url=f"sqlite:///{db_file}"))
    try:
        with flask_app.app_context():
            engine = get_runtime().engine
            upgrade(engine)
            engine.dispose()
            with engine.connect() as conn:  # the pool's only connection from here on
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
        client, hdrs = flask_app.test_client(), _headers(flask_app)
        other = sqlite3.connect(db_file, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            r = client.post("/fhir/R4/Patient", json=patient(), headers=hdrs)
            other.execute("ROLLBACK")
        finally:
            other.close()
        problems = []
        if r.status_code != 503 or not r.headers.get("Retry-After"):
            problems.append(
                "APP BUG (app/services/unit_of_work.py UnitOfWork.__enter__): 'database is "
                "locked' raised by `self.conn.begin()` (BEGIN IMMEDIATE) is not translated to "
                f"ServiceUnavailable: answered {r.status_code} {r.json}"
            )
        if engine.pool.checkedout() != 0:  # type: ignore[attr-defined]
            problems.append(
                "APP BUG (app/services/unit_of_work.py UnitOfWork.__enter__): the connection "
                "opened before `self.conn.begin()` failed is not closed (it stays checked out of the "
                "pool until garbage-collected)"
            )
        assert not problems, "\n".join(problems)
        assert client.post("/fhir/R4/Patient", json=patient(), headers=hdrs).status_code == 201
    finally:
        with flask_app.app_context():
            get_runtime().close()
