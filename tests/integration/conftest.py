"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from tests.conftest import PG_ADMIN_URL, PG_TEST_DB
from tests.served import SERVERS, Served, serving


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own on each backend, for a test that migrates it step by
    step; the PostgreSQL one is named after the module's `REVISION` (e.g. `…_m0004`), so
    two such modules never share one."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield made
        made.dispose()
        return
    name = f"{PG_TEST_DB}_m{request.module.REVISION}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    made = create_engine(f"{base}/{name}")
    yield made
    made.dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`orders-service serve` under each server in turn (tests/served.py)."""
    with serving(request.param, tmp_path) as server:
        yield server
