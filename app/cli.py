"""The `orders-service` console script (DESIGN §2): serve, migrate, seed-demo, token, dev,
kb import-rxnorm.

Every command reads its configuration through `Settings.from_env()`, the one place the
environment is read, so the CLI and the server always agree on the database, the cache and
the instance folder (which holds the development signing key).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy.engine import make_url

from app import create_app, demo
from app.auth.devkeys import mint_token
from app.cds.knowledge_base import KnowledgeError, load_knowledge
from app.db import make_engine
from app.metrics import MULTIPROC_ENV
from app.migrate import upgrade
from app.runtime import get_runtime, rxnorm_overlay
from app.rxnorm_import import build_overlay, write_overlay
from app.settings import DEV_MODE_ENV, DEV_MODE_WARNING, ConfigurationError, Settings
from app.web import draining, granian_server
from app.web.draining import WSGIApplication
from app.worker import main as worker_main

DEMO_TENANT = "demo"
DEV_TOKEN_LIFETIME_SECONDS = 8 * 3600  # a working day; the dev runner prints it once


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def _dev_mode_settings(opt_in: bool) -> Settings:
    """Settings for a server: development mode only when asked for, and then loudly.

    The opt-in is put in the environment so that gunicorn's workers, which build their own
    settings from it, see it too.
    """
    if opt_in:
        os.environ[DEV_MODE_ENV] = "1"
    settings = _settings()
    try:
        settings.check_dev_mode_opt_in()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.dev_mode:
        banner = "!" * 78
        click.secho(f"{banner}\n{DEV_MODE_WARNING}\n{banner}", fg="red", bold=True, err=True)
    return settings


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


#: In-flight requests get this long to finish once a worker stops (after its drain).
GRACEFUL_TIMEOUT_SECONDS = 30


def _run_gunicorn(host: str, port: int, workers: int, threads: int, drain: float = 0.0) -> None:
    """Run gunicorn in this process with the app factory, one app per worker.

    preload is off so that every worker builds its own engine pool and cache client after
    the fork (sockets must not be shared across processes). gunicorn's access log is off:
    `app.observability` writes one JSON line per request instead.

    Shutdown (SIGTERM to the master): each worker drains for `drain` seconds (every response
    `Connection: close`, /readyz 503; app/web/draining.py), then stops accepting and gives
    in-flight requests GRACEFUL_TIMEOUT_SECONDS; the master waits for both before SIGKILL.
    """
    from gunicorn.app.base import BaseApplication
    from prometheus_client import multiprocess

    _metrics_directory()
    options: dict[str, Any] = {
        "bind": _bind_address(host, port),
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": False,
        "timeout": 30,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS + math.ceil(drain),
        "post_worker_init": lambda worker: draining.install_sigterm_drain(worker, drain),
        "accesslog": None,
        "errorlog": "-",
        "proc_name": "orders-service",
        # A dead worker's live gauges (connections in use) stop counting (prometheus-client
        # multiprocess mode); its counters stay, as they should.
        "child_exit": lambda _server, worker: multiprocess.mark_process_dead(worker.pid),
    }
    # Recent gunicorn opens a control socket at one fixed path per user; we do not use it, and a
    # second server on the machine (tests, a dev run) would fight over that path.
    optional: dict[str, Any] = {"control_socket_disable": True}

    class OrdersApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            for key, value in optional.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Flask:
            return served_app()

    OrdersApplication().run()


def _metrics_directory() -> None:
    """Workers share their metrics through files in `PROMETHEUS_MULTIPROC_DIR` (app/metrics.py):
    a fresh directory per server unless the operator names one, which is emptied at start
    (samples of a previous run must not be added to this one's)."""
    configured = os.environ.get(MULTIPROC_ENV)
    if not configured:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="orders-service-metrics-")
        return
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def served_app() -> Flask:
    """The application a serving process runs (a factory: one per worker, after the fork)."""
    app = create_app()
    app.extensions["orders"].keep_statistics()  # app/store/statistics.py
    return app


def granian_app() -> WSGIApplication:
    """The app factory of a granian worker: `served_app` with the drain's hooks (one per
    worker, after the fork; app/web/granian_server.py)."""
    app = served_app()
    return granian_server.worker_app(app, app.config["SETTINGS"])


def _run_granian(host: str, port: int, workers: int, threads: int, drain: float = 0.0) -> None:
    """Run granian (a Rust HTTP server with a WSGI interface) with the same app factory:
    `threads` blocking threads per worker run the Flask app, as gunicorn's gthread does.

    Shutdown (SIGTERM) as with gunicorn: each worker drains for `drain` seconds, then stops
    accepting and gives in-flight requests GRACEFUL_TIMEOUT_SECONDS; granian's parent waits
    for both before SIGKILL."""
    _metrics_directory()
    granian_server.serve(
        "app.cli:granian_app",
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        drain_seconds=drain,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS,
    )


#: The first is the default: granian costs less CPU per request (docs/decisions.md).
SERVERS = ("granian", "gunicorn")


def _run_server(
    server: str, host: str, port: int, workers: int, threads: int, drain: float = 0.0
) -> None:
    run = _run_granian if server == "granian" else _run_gunicorn
    run(host, port, workers, threads, drain)


def _migrate(settings: Settings) -> None:

    engine = make_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"migrated {_safe_url(settings.database_url)} to head", err=True)


def _seed(settings: Settings) -> None:
    """Seed inside an application context, so services that use `get_runtime()` work."""

    app = create_app(settings)
    with app.app_context():
        runtime = get_runtime()
        try:
            demo.seed(runtime)
        finally:
            runtime.close()
    click.echo(f"seeded demo data (tenant {DEMO_TENANT!r})", err=True)


def _mint(settings: Settings, **claims: Any) -> str:
    if not settings.dev_mode:
        raise click.ClickException(
            "development tokens are available only in development mode; OIDC_ISSUER, "
            "OIDC_AUDIENCE and OIDC_JWKS_URL are set, so get a token from that identity provider"
        )
    return mint_token(settings, **claims)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Clinical orders service: a FHIR R4 store with a legacy JSON face and CDS Hooks."""


_host = click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
_port = click.option("--port", default=8000, show_default=True, type=int, help="Port to bind.")
_threads = click.option(
    "--threads", default=4, show_default=True, type=click.IntRange(1), help="Threads per worker."
)
_server = click.option(
    "--server",
    type=click.Choice(SERVERS),
    default=SERVERS[0],
    show_default=True,
    help="WSGI server; both drain on SIGTERM (README, 'Draining a node').",
)


@main.command()
@_host
@_port
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1), help="Worker processes."
)
@_threads
@click.option(
    "--dev",
    "dev_mode",
    is_flag=True,
    help=f"Allow development mode (no OIDC_*; local signing key). Same as {DEV_MODE_ENV}=1.",
)
@_server
def serve(host: str, port: int, workers: int, threads: int, dev_mode: bool, server: str) -> None:
    """Serve HTTP with a production WSGI server (threaded workers)."""
    settings = _dev_mode_settings(dev_mode)  # fail here, before forking, on a bad configuration
    _run_server(server, host, port, workers, threads, settings.shutdown_drain_seconds)


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision (alembic upgrade head)."""
    _migrate(_settings())


@main.command()
@click.option(
    "--poll", default=0.5, show_default=True, type=click.FloatRange(0.05), help="Idle sleep (s)."
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--dev",
    "dev_mode",
    is_flag=True,
    help=f"Allow development mode (loopback http endpoints). Same as {DEV_MODE_ENV}=1.",
)
def worker(poll: float, once: bool, dev_mode: bool) -> None:
    """Deliver subscription notifications (several may run on PostgreSQL; one on SQLite).

    Like `serve`, it refuses development mode unless asked for: there the endpoint rules
    are looser (plain http to loopback), which a misconfigured production worker must not
    silently get."""
    settings = _dev_mode_settings(dev_mode)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    steps = worker_main.run(settings, poll=poll, once=once)
    click.echo(f"worker stopped after {steps} delivery steps", err=True)


@main.command("seed-demo")
def seed_demo() -> None:
    """Load demonstration patients, encounters and orders into tenant "demo"."""
    _seed(_settings())


@main.command()
@click.option("--role", "roles", multiple=True, required=True, help="Role; repeatable.")
@click.option("--tenant", "tenants", multiple=True, required=True, help="Tenant; repeatable.")
@click.option("--patient", "patient_id", default=None, help="patient_id claim (PATIENT role).")
@click.option("--sub", default="dev-user", show_default=True, help="Subject claim.")
@click.option("--scope", default=None, help='SMART scopes, e.g. "user/*.read".')
@click.option(
    "--entitlement",
    "entitlements",
    multiple=True,
    default=("clinical.orders",),
    show_default=True,
    help="Module entitlement; repeatable.",
)
@click.option("--expires-in", default=3600, show_default=True, type=click.IntRange(1))
def token(
    roles: tuple[str, ...],
    tenants: tuple[str, ...],
    patient_id: str | None,
    sub: str,
    scope: str | None,
    entitlements: tuple[str, ...],
    expires_in: int,
) -> None:
    """Print a development bearer token (development mode only) and nothing else."""
    click.echo(
        _mint(
            _settings(),
            sub=sub,
            roles=[r.upper() for r in roles],
            tenants=list(tenants),
            patient_id=patient_id,
            scope=scope,
            entitlements=list(entitlements),
            expires_in=expires_in,
        )
    )


@main.command()
@_host
@_port
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1),
    help="Worker processes [default: 1 with the in-process cache, else 2].",
)
@_threads
@_server
def dev(host: str, port: int, workers: int | None, threads: int, server: str) -> None:
    """Migrate, seed the demo tenant, print a CLINICIAN token and a curl line, then serve."""
    settings = _dev_mode_settings(True)
    _migrate(settings)
    _seed(settings)
    # The in-process cache is per process; one worker keeps idempotent replays consistent.
    workers = workers or (2 if settings.redis_url else 1)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
    base = f"http://{_bind_address(shown_host, port)}"
    click.echo(f"database: {_safe_url(settings.database_url)}")
    click.echo(f"cache:    {'redis' if settings.redis_url else 'in-process'}")
    if settings.dev_mode:
        tok = _mint(
            settings,
            sub="dev-clinician",
            roles=["CLINICIAN"],
            tenants=[DEMO_TENANT],
            expires_in=DEV_TOKEN_LIFETIME_SECONDS,
        )
        click.echo("\nA CLINICIAN token for tenant demo (valid 8 h), and a first request:\n")
        click.echo(f"export TOKEN={tok}")
        click.echo(
            f'curl -s -H "Authorization: Bearer $TOKEN" -H "X-Tenant-ID: {DEMO_TENANT}" '
            f"'{base}/fhir/R4/ServiceRequest?_count=5'\n"
        )
    else:
        click.echo("OIDC is configured: use a token from your identity provider.")
    click.echo(f"serving on {base} with {server} (Ctrl-C stops)")
    _run_server(server, host, port, workers, threads)


@main.group()
def kb() -> None:
    """The decision-support knowledge base."""


@kb.command("import-rxnorm")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Overlay to write (default: <instance>/knowledge/rxnorm-products.json).",
)
def import_rxnorm(directory: Path, output: Path | None) -> None:
    """Fill the product table from an RxNorm release (RXNCONSO.RRF, RXNREL.RRF in DIRECTORY).

    Writes every clinical/branded drug and pack of the knowledge base's ingredients to an
    overlay in the instance folder, loaded at the next start (docs/knowledge-base.md).
    """
    settings = _settings()
    target = output or rxnorm_overlay(settings)
    shipped = load_knowledge()
    for name in ("RXNCONSO.RRF", "RXNREL.RRF"):
        if not (directory / name).is_file():
            raise click.ClickException(f"{directory / name} not found (an RxNorm release's rrf/)")
    document = build_overlay(directory, shipped)
    try:
        summary = write_overlay(document, target, lambda p: load_knowledge(overlays=[p]))
    except KnowledgeError as exc:
        raise click.ClickException(f"the imported table does not load: {exc}") from exc
    click.echo(
        f"{summary.products} products ({summary.new_ingredients} ingredients new to the "
        f"knowledge base) written to {summary.path}; restart the service to load them."
    )
