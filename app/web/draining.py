"""Graceful shutdown behind a load balancer (issue 11, item 21).

On SIGTERM a worker first *drains* for `SHUTDOWN_DRAIN_SECONDS` (default 5): it keeps
serving every request, including new connections, but answers each with
`Connection: close`, so no client keeps reusing a connection the server is about to drop,
and `/readyz` answers 503 `draining`, so the load balancer takes the node out of rotation.
Then the server's own graceful stop runs: no new connections, in-flight requests finish
within the graceful timeout, and idle kept-alive connections are closed. Without the drain,
a request sent on a kept-alive connection or accepted just after SIGTERM was reset.

Both servers of `orders-service serve` drain the same way, each through its own hook:
gunicorn's `post_worker_init` (`install_sigterm_drain`) and granian's worker start
(app/web/granian_server.py); `drain_on_sigterm` is the part they share.

The state is per process (one worker = one process); it is only ever set, never cleared.
See README ("Draining a node") for the operator's side.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
_draining = threading.Event()

#: A WSGI application (PEP 3333): environ, start_response -> body.
WSGIApplication = Callable[[dict[str, Any], Any], Iterable[bytes]]


def begin() -> None:
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def drain_on_sigterm(stop: Callable[[], None], seconds: float) -> None:
    """Make this process's SIGTERM start the drain, and call `stop` (the server's own
    graceful stop for this worker) `seconds` later. A second SIGTERM changes nothing: the
    stop is already on its way (gunicorn's master and a systemd control-group kill may both
    send one)."""

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        if _draining.is_set():
            return
        begin()
        log.warning("SIGTERM: draining for %.1f s (Connection: close, /readyz 503)", seconds)
        timer = threading.Timer(max(seconds, 0.0), stop)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)


def install_sigterm_drain(worker: Any, seconds: float) -> None:
    """gunicorn `post_worker_init` hook: SIGTERM starts the drain, and the worker's own
    SIGTERM handler (stop accepting, finish in-flight requests) runs `seconds` later.

    `Connection` is hop-by-hop, which a WSGI application may not set (PEP 3333), so the
    worker's response object is told instead: while draining, each response is forced to
    close its connection (gunicorn then sends `Connection: close`). Idle kept-alive
    connections stay open during the drain, so a request sent on one is answered.
    """
    stop = worker.handle_exit
    application = worker.wsgi

    def draining_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if _draining.is_set():
            response = getattr(start_response, "__self__", None)  # gunicorn's Response
            force_close = getattr(response, "force_close", None)
            if callable(force_close):
                force_close()
        return application(environ, start_response)

    worker.wsgi = draining_wsgi
    drain_on_sigterm(lambda: stop(signal.SIGTERM, None), seconds)


def closing_while_draining(application: WSGIApplication) -> WSGIApplication:
    """`application`, with `Connection: close` added to each response while draining, for
    a server that honours it from the application (granian does: it then closes the
    connection after the response). PEP 3333 leaves hop-by-hop headers to the server; this
    one is the server's own drain speaking through the only channel granian offers."""

    def draining_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not _draining.is_set():  # every request but those of a drain: no wrapper
            return application(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        return application(environ, start)

    return draining_wsgi
