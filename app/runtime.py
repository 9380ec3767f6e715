"""The per-application object graph, built once in `create_app` (no import-time side effects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import Engine

from app import metrics
from app.auth.tokens import Authenticator
from app.cache import Cache, make_cache
from app.cds.engine import CdsEngine
from app.cds.knowledge_base import load_knowledge
from app.db import Database, make_engine
from app.services.audit_trail import AuditTrail
from app.settings import Settings
from app.store.statistics import StatisticsKeeper
from app.terminology import BUDGET_SECONDS, COOLDOWN_SECONDS, TIMEOUT_SECONDS, RxNavClient


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    database: Database
    cache: Cache
    authenticator: Authenticator
    cds: CdsEngine
    #: The read-event buffer of the access audit trail; None when the trail is off.
    audit: AuditTrail | None
    keeper: StatisticsKeeper | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings)
        metrics.instrument_engine(engine)
        database = Database(engine)
        cache = make_cache(settings)
        # The knowledge base is validated here: a bad file stops start-up with its path. The
        # RxNorm import overlay (`orders-service kb import-rxnorm`) is merged when present.
        kb = load_knowledge(_knowledge_dir(settings), overlays=[rxnorm_overlay(settings)])
        return cls(
            settings=settings,
            engine=engine,
            database=database,
            cache=cache,
            authenticator=Authenticator(settings),
            cds=CdsEngine(kb, lookup=_terminology(settings, cache)),
            audit=(
                AuditTrail(database, flush_seconds=settings.audit_flush_seconds)
                if settings.audit_enabled
                else None
            ),
        )

    def keep_statistics(self) -> None:
        """Serving processes analyze the store's tables while the database does not
        (autovacuum off): app/store/statistics.py."""
        if self.keeper is None:
            self.keeper = StatisticsKeeper(self.engine)
            self.keeper.start()

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        if self.keeper is not None:
            self.keeper.stop()
        self.engine.dispose()
        self.cache.close()


def _knowledge_dir(settings: Settings) -> Path | None:
    """Tests may point at another knowledge directory; production uses the shipped one."""
    value = settings.extra.get("knowledge_dir")
    return Path(str(value)) if value else None


def rxnorm_overlay(settings: Settings) -> Path:
    """Where `orders-service kb import-rxnorm` writes the product table (docs/decisions.md)."""
    return settings.instance_path / "knowledge" / "rxnorm-products.json"


def _terminology(settings: Settings, cache: Cache) -> RxNavClient | None:
    if not settings.terminology_url:
        return None
    knobs = {k: float(str(v)) for k, v in settings.extra.items() if k.startswith("terminology_")}
    return RxNavClient(
        settings.terminology_url,
        cache,
        timeout_seconds=knobs.get("terminology_timeout", TIMEOUT_SECONDS),
        budget_seconds=knobs.get("terminology_budget", BUDGET_SECONDS),
        cooldown_seconds=knobs.get("terminology_cooldown", COOLDOWN_SECONDS),
    )


def get_runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["orders"]
    return runtime
