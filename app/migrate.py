"""Alembic driven from code, so `orders-service migrate` and the tests share one path."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from app.store.statistics import analyze

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade, then ANALYZE the store's tables on PostgreSQL: a migration may build indexes
    on a populated database whose statistics nothing else collects (autovacuum off; see
    app/store/statistics.py). On an empty database it costs nothing."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        if connection.dialect.name == "postgresql" and revision == "head":
            analyze(connection)


def autogenerate(engine: Engine, message: str) -> None:
    """Developer helper: write a new revision from the difference to `storage.metadata`."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.revision(cfg, message=message, autogenerate=True)
