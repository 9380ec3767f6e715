"""granian as the server of `orders-service serve` (issue 13), with what gunicorn gives us
through its hooks and its workers' exit: the SIGTERM drain, the audit trail's flush at exit
and the multiprocess metrics' bookkeeping.

granian's shape (2.x, `granian.server.mp.MPServer`): a Python parent binds the socket and
forks `workers` processes; each serves HTTP from Rust and runs the WSGI app on `threads`
blocking threads. On SIGTERM (or SIGINT) the parent sends SIGTERM to every worker and waits
for each (up to `workers_kill_timeout`, then SIGKILL). A worker's SIGTERM handler, which
granian installs once the app is loaded, starts granian's graceful stop: the worker stops
accepting, finishes its in-flight requests (answered with `Connection: close`) and closes
its idle kept-alive connections.

The drain (app/web/draining.py) puts one step in front of that graceful stop, in each
worker, just as it does in a gunicorn worker:

- `worker_app`, which builds the WSGI callable in each worker, wraps granian's signal set-up
  (`granian._signals.set_sync_signals`, which the worker calls right after loading the app)
  so that the worker's SIGTERM starts the drain, and granian's own stop follows
  `SHUTDOWN_DRAIN_SECONDS` later. While draining, every response carries
  `Connection: close`, which granian honours (it closes the connection after that
  response), and `/readyz` answers 503.
- The parent needs nothing new for the drain: it forwards SIGTERM at once, as gunicorn's
  master does, and waits GRACEFUL_TIMEOUT plus the drain before it kills a worker. Because
  each worker drains on its own SIGTERM, a signal to the parent alone (Kubernetes,
  `docker stop`) and one to every process (systemd's control-group kill) behave the same.
  (SIGINT reaching the workers, a Ctrl-C in a terminal, stops them at once, as before.)

Exit: a granian worker is a `multiprocessing` process, which ends with `os._exit` and so
never runs the `atexit` handlers a gunicorn worker runs on its way out; the audit trail's
buffered read events are written by one (app/services/audit_trail.py). `worker_app`
registers them with multiprocessing's own exit finalizers, so a worker that stops (drain,
respawn) writes its buffer first, as a gunicorn worker does.

A dead parent: a gunicorn worker notices its master is gone (its parent pid changes) and
stops; a granian worker would serve on, orphaned, holding the port. `worker_app` starts a
thread that checks every second and, when the parent is gone, sends the worker SIGTERM: it
drains and stops like any other.

Metrics: prometheus-client's files in `PROMETHEUS_MULTIPROC_DIR` are per process, so a
scrape of any worker already adds up all of them. What gunicorn's `child_exit` adds, the
parent does here: a worker that is replaced (crashed, or respawned) has its live gauges
removed (`mark_process_dead`). Crashed workers are replaced, as gunicorn does, instead of
granian's default of stopping the server.

The scheme behind a TLS-terminating proxy: gunicorn believes `X-Forwarded-Proto: https` (and
`X-Forwarded-Protocol: ssl`, `X-Forwarded-SSL: on`) from the addresses in
`FORWARDED_ALLOW_IPS` (loopback by default), so links built from the request (`fullUrl`,
`Location`, paging; with `TRUSTED_HOSTS` and no `PUBLIC_BASE_URL`) say `https`. granian
believes no header; `forwarded_scheme` applies gunicorn's rule, contradictory headers
included (400).

Differences a client may see (canonical reason phrases, lower-case header names, limits):
docs/operations.md, "Processes".

Private names used: `granian._signals.set_sync_signals`, `MPServer._respawn_workers` and its
`wrks`, `atexit._run_exitfuncs`. granian is pinned below 3, and the tests that run both
servers (tests/integration/test_graceful_shutdown.py, test_metrics_workers.py,
test_forwarded_scheme.py) fail if any of them stops doing its part.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import multiprocessing.util
import os
import signal
import threading
import time
from typing import Any

from app.settings import Network, Settings
from app.web import draining
from app.web.draining import WSGIApplication

#: gunicorn's `secure_scheme_headers`: the header (as a WSGI key) and its value for https.
SECURE_SCHEME_HEADERS = {
    "HTTP_X_FORWARDED_PROTOCOL": "ssl",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_SSL": "on",
}
_CONTRADICTORY = b"Contradictory scheme headers\n"
#: How often a worker checks that its parent is alive (gunicorn's workers: about every 1 s).
PARENT_CHECK_SECONDS = 1.0

log = logging.getLogger(__name__)


def forwarded_scheme(application: WSGIApplication, allowed: tuple[Network, ...]) -> WSGIApplication:
    """`application`, with `wsgi.url_scheme` taken from the scheme headers of a request whose
    peer is in `allowed`, as gunicorn does (see the module docstring); headers that disagree
    are a 400, as there."""

    def scheme_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        schemes = {
            "https" if environ[name] == secure else "http"
            for name, secure in SECURE_SCHEME_HEADERS.items()
            if name in environ
        }
        if schemes and _peer_in(environ.get("REMOTE_ADDR", ""), allowed):
            if len(schemes) > 1:
                length = str(len(_CONTRADICTORY))
                start_response(
                    "400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", length)]
                )
                return [_CONTRADICTORY]
            environ["wsgi.url_scheme"] = schemes.pop()
        return application(environ, start_response)

    return scheme_wsgi


def _stop_when_orphaned() -> None:
    """SIGTERM this worker (drain, then stop) once its parent has gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        log.warning("the server's main process %d is gone: stopping this worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _peer_in(address: str, allowed: tuple[Network, ...]) -> bool:
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in network for network in allowed)


def worker_app(application: WSGIApplication, settings: Settings) -> WSGIApplication:
    """The WSGI callable a granian worker serves; call it in the worker (the app factory
    runs there, before granian sets up the worker's signals)."""
    drain_seconds = settings.shutdown_drain_seconds
    from granian import _signals

    granian_set_up = _signals.set_sync_signals

    def set_sync_signals() -> Any:
        stop = granian_set_up()  # a WorkerSignal: set() starts granian's graceful stop
        draining.drain_on_sigterm(stop.set, drain_seconds)
        return stop

    _signals.set_sync_signals = set_sync_signals
    # Run this process's atexit handlers when the worker ends (see the module docstring).
    multiprocessing.util.Finalize(None, atexit._run_exitfuncs, exitpriority=0)
    _stop_when_orphaned()
    served = forwarded_scheme(application, settings.forwarded_allow)
    return draining.closing_while_draining(served)


def serve(
    factory: str,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    drain_seconds: float,
    graceful_timeout: int,
) -> None:
    """Run granian in this process (the parent) until SIGTERM or SIGINT. `factory` names the
    app factory ("module:function"), called once in each worker; it should return
    `worker_app(...)`."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.mp import MPServer
    from prometheus_client import multiprocess

    class Server(MPServer):
        def _respawn_workers(self, workers: Any, *args: Any, **kwargs: Any) -> None:
            replaced = [self.wrks[idx].inner.pid for idx in workers]
            super()._respawn_workers(workers, *args, **kwargs)  # the old ones have exited
            for pid in replaced:
                multiprocess.mark_process_dead(pid)

    Server(
        factory,
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,  # app.observability writes the access line
        respawn_failed_workers=True,
        workers_kill_timeout=graceful_timeout + math.ceil(drain_seconds),
    ).serve()
