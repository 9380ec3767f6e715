"""The per-application object graph, built once in `create_app` (no import-time side effects)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import Engine

from app.auth.tokens import Authenticator
from app.cache import Cache, make_cache
from app.cds.engine import CdsEngine
from app.cds.knowledge_base import load_knowledge
from app.db import Database, make_engine
from app.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    database: Database
    cache: Cache
    authenticator: Authenticator
    cds: CdsEngine

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            database=Database(engine),
            cache=make_cache(settings),
            authenticator=Authenticator(settings),
            # The knowledge base is validated here: a bad file stops start-up with its path.
            cds=CdsEngine(load_knowledge(_knowledge_dir(settings))),
        )

    def close(self) -> None:
        self.engine.dispose()
        self.cache.close()


def _knowledge_dir(settings: Settings) -> Path | None:
    """Tests may point at another knowledge directory; production uses the shipped one."""
    value = settings.extra.get("knowledge_dir")
    return Path(str(value)) if value else None


def get_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["orders"]
    return runtime
