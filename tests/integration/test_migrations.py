"""The migrations build exactly the schema `app/store/tables.py` declares, on both backends.

Indexes are declared twice (the model, for readers and autogenerate; the revision, for
databases): a missing or extra one would silently change query plans (see revision 0003).
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app.runtime import get_runtime
from app.store.tables import metadata


def test_migrated_schema_matches_the_models(app: Flask) -> None:
    with app.app_context(), get_runtime().engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Type-affinity noise aside, nothing may differ: tables, columns, indexes, keys.
    assert [d for d in diff if d[0] not in ("modify_type",)] == []
