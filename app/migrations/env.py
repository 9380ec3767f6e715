"""Alembic environment: the URL comes from the caller (`app.migrate.upgrade`), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `orders-service migrate`")
_run(connection)
