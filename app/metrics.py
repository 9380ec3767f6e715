"""Prometheus metrics: what they count, and `/metrics`, the one place they are read.

prometheus-client in multiprocess mode when `PROMETHEUS_MULTIPROC_DIR` is set (`orders-service
serve` sets it for its gunicorn workers): each worker writes its samples to files there and a
scrape of any worker aggregates all of them. The library chooses its storage when it is first
imported, so nothing imports it at module level: `_Metrics.build` does, once per process,
after the server has set the directory (hence the function-level import below; it is a
library, not an app module).

Labels are bounded: the face, the route *template* (`/fhir/R4/{type}/{id}`, never a raw id),
the status; a CDS rule id and level; an error code. docs/operations.md says what to alert on.

`/metrics` itself is app/web/metrics.py. No Flask here: services count through this module.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Delivery lag: a healthy worker delivers in tens of milliseconds; retries take minutes.
LAG_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass
class _Metrics:
    requests: Any
    latency: Any
    cds_alerts: Any
    activation_refusals: Any
    replays: Any
    pool_in_use: Any
    pool_overflow: Any
    redis_up: Any
    audit_written: Any
    audit_dropped: Any
    audit_buffered: Any
    outbox_depth: Any
    outbox_oldest: Any
    delivery_lag: Any
    multiprocess: bool

    @classmethod
    def build(cls) -> _Metrics:
        import prometheus_client as prom  # see the module docstring
        from prometheus_client import values

        multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if multiprocess and values.ValueClass is values.MutexValue:
            # Imported before the directory was set (a test, a dev shell): choose again.
            values.ValueClass = values.get_value_class()
        return cls(
            requests=prom.Counter(
                "orders_http_requests",
                "HTTP requests served, by face, route template, method and status",
                ["face", "route", "method", "status"],
            ),
            latency=prom.Histogram(
                "orders_http_request_duration_seconds",
                "Time to serve a request, by face, route template and method",
                ["face", "route", "method"],
                buckets=LATENCY_BUCKETS,
            ),
            cds_alerts=prom.Counter(
                "orders_cds_alerts",
                "CDS alerts raised, by hook, rule and level",
                ["hook", "rule", "level"],
            ),
            activation_refusals=prom.Counter(
                "orders_activation_refusals",
                "Order activations refused, by error code",
                ["reason"],
            ),
            replays=prom.Counter(
                "orders_idempotent_replays",
                "Creates answered with the original order (cache replay or stored key)",
                ["source"],
            ),
            pool_in_use=prom.Gauge(
                "orders_db_pool_in_use",
                "Database connections checked out",
                multiprocess_mode="livesum",
            ),
            pool_overflow=prom.Gauge(
                "orders_db_pool_overflow",
                "Connections open beyond the pool size",
                multiprocess_mode="livesum",
            ),
            redis_up=prom.Gauge(
                "orders_redis_up",
                "1 if the idempotency cache answered PING at the last scrape",
                multiprocess_mode="mostrecent",
            ),
            audit_written=prom.Counter(
                "orders_audit_events_written", "Buffered (read) AuditEvents written"
            ),
            audit_dropped=prom.Counter(
                "orders_audit_events_dropped",
                "Read AuditEvents dropped: buffer full, or refused by the database",
            ),
            audit_buffered=prom.Gauge(
                "orders_audit_events_buffered",
                "Read AuditEvents waiting to be written",
                multiprocess_mode="livesum",
            ),
            outbox_depth=prom.Gauge(
                "orders_subscription_events_undelivered",
                "Subscription events not yet delivered (staged or numbered), all tenants",
                multiprocess_mode="mostrecent",
            ),
            outbox_oldest=prom.Gauge(
                "orders_subscription_oldest_undelivered_seconds",
                "Age of the oldest undelivered subscription event (0: none)",
                multiprocess_mode="mostrecent",
            ),
            delivery_lag=prom.Histogram(
                "orders_subscription_delivery_lag_seconds",
                "From an event's commit to its receiver's 2xx, per event delivered",
                buckets=LAG_BUCKETS,
            ),
            multiprocess=multiprocess,
        )


_metrics: _Metrics | None = None


def scrape() -> tuple[bytes, str]:
    """The exposition text (all workers' samples in multiprocess mode) and its media type."""
    import prometheus_client as prom  # see the module docstring
    from prometheus_client import multiprocess

    if _get().multiprocess:
        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prom.REGISTRY
    return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST


def set_outbox(depth: int, oldest_seconds: float) -> None:
    """Set at scrape time from the database (any process may serve the scrape)."""
    m = _get()
    m.outbox_depth.set(depth)
    m.outbox_oldest.set(oldest_seconds)


def delivered(lags_seconds: list[float]) -> None:
    """The delivery worker's 2xx: one observation per event it carried. The worker writes
    to the same `PROMETHEUS_MULTIPROC_DIR` as the server to show up in its `/metrics`."""
    m = _get()
    for lag in lags_seconds:
        m.delivery_lag.observe(max(lag, 0.0))


def set_redis_up(up: bool) -> None:
    _get().redis_up.set(1 if up else 0)


_build_lock = threading.Lock()


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _build_lock:
            if _metrics is None:
                _metrics = _Metrics.build()
    return _metrics


# ---------------------------------------------------------------------- what is counted
def observe_request(face: str, route: str, method: str, status: int, seconds: float) -> None:
    m = _get()
    m.requests.labels(face, route, method, str(status)).inc()
    m.latency.labels(face, route, method).observe(seconds)


def cds_alerts(hook: str, alerts: Any) -> None:
    m = _get()
    for alert in alerts:
        m.cds_alerts.labels(hook, alert.rule_id, alert.level).inc()


def activation_refused(reason: str) -> None:
    _get().activation_refusals.labels(reason).inc()


def idempotent_replay(source: str) -> None:
    _get().replays.labels(source).inc()


def audit_written(n: int) -> None:
    _get().audit_written.inc(n)


def audit_dropped(n: int) -> None:
    _get().audit_dropped.inc(n)


def audit_buffered(n: int) -> None:
    _get().audit_buffered.set(n)


def instrument_engine(engine: Engine) -> None:
    """Connections in use and overflow, kept up to date by the pool's own events."""
    m = _get()
    pool = engine.pool

    def _overflow() -> None:
        overflow = getattr(pool, "overflow", None)
        if callable(overflow):
            m.pool_overflow.set(max(0, overflow()))

    @event.listens_for(engine, "checkout")
    def _checkout(*_args: Any) -> None:
        m.pool_in_use.inc()
        _overflow()

    @event.listens_for(engine, "checkin")
    def _checkin(*_args: Any) -> None:
        m.pool_in_use.dec()
        _overflow()
