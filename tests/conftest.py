"""Shared fixtures: one migrated app per storage backend, a fresh tenant per test.

Storage and FHIR tests run on both backends: SQLite (the embedded default) and PostgreSQL
(psycopg 3). Every test works in its own tenant, so tests never see each other's data and
need no cleanup — and tenant isolation is exercised by every test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from ulid import ULID
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from app.auth.devkeys import mint_token
from app.migrate import upgrade
from app.runtime import get_runtime
from app.settings import Settings

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DB = os.environ.get("TEST_PG_DB", "orders_test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
#: Both by default; `make mutate` runs its mutants on SQLite only (TEST_BACKENDS=sqlite).
BACKENDS = os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",")


def _fresh_pg_database() -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{PG_TEST_DB}"


def make_settings(backend: str, instance: Path) -> Settings:
    if backend == "sqlite":
        return Settings(instance_path=instance, database_url=f"sqlite:///{instance / 'test.db'}")
    return Settings(
        instance_path=instance,
        # Created once per session: dropping it again would kill the pooled connections of
        # apps already serving from it.
        database_url=_pg_url_existing(),
        redis_url=REDIS_TEST_URL,
        extra={"pool_size": 20, "max_overflow": 20},
    )


@pytest.fixture(scope="session", params=BACKENDS)
def backend_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    backend = request.param
    instance = tmp_path_factory.mktemp(f"instance-{backend}")
    app = create_app(make_settings(backend, instance))
    with app.app_context():
        upgrade(get_runtime().engine)
    app.config["BACKEND"] = backend
    yield app
    with app.app_context():
        get_runtime().close()


@pytest.fixture
def app(backend_app: Flask) -> Flask:
    return backend_app


@pytest.fixture
def pg_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """A PostgreSQL-only app, for the tests the issue requires on PostgreSQL specifically."""
    instance = tmp_path_factory.mktemp("instance-pg-only")
    settings = Settings(
        instance_path=instance,
        database_url=_pg_url_existing(),
        redis_url=REDIS_TEST_URL,
        extra={"pool_size": 20, "max_overflow": 20},
    )
    flask_app = create_app(settings)
    with flask_app.app_context():
        upgrade(get_runtime().engine)
    flask_app.config["BACKEND"] = "postgresql"
    yield flask_app
    with flask_app.app_context():
        get_runtime().close()


def _pg_url_existing() -> str:
    """The PostgreSQL test database, created once per session (migrations are idempotent)."""
    global _PG_READY
    if not _PG_READY:
        _PG_READY = _fresh_pg_database()
    return _PG_READY


_PG_READY = ""


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def tenant() -> str:
    return f"t-{ULID()}".lower()


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def headers(app: Flask, tenant: str) -> TokenFactory:
    """`headers("ADMIN")` → Authorization + X-Tenant-ID for the test's tenant."""
    settings: Settings = app.config["SETTINGS"]

    def make(*roles: str, tenant_id: str | None = None, **claims: Any) -> dict[str, str]:
        t = tenant_id or tenant
        token = mint_token(settings, roles=roles or ("CLINICIAN",), tenants=(t,), **claims)
        return {
            "Authorization": f"Bearer {token}",
            "X-Tenant-ID": t,
            "Content-Type": "application/fhir+json",
        }

    return make


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """The app served over real HTTP on loopback, for tests that race requests."""
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def ward(client: FlaskClient, headers: TokenFactory) -> Any:
    """A small ward for clinical stories (tests/clinical/ward.py)."""
    from tests.clinical.ward import Ward

    return Ward(client, headers)
