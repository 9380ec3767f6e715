"""PostgreSQL goes away and comes back: 503 with Retry-After in the meantime, then recovery.

A small TCP proxy on loopback stands between the app and the real PostgreSQL server; the
test cuts it (closing every open connection) and restores it on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app.auth.devkeys import mint_token
from app.migrate import upgrade
from app.runtime import get_runtime
from app.settings import Settings
from tests.conftest import REDIS_TEST_URL, _pg_url_existing
from tests.fhir_data import patient


class Proxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def stop(self) -> None:
        assert self._listener is not None
        # shutdown() wakes the thread blocked in accept(); close() alone leaves it listening.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
                except OSError:
                    pass
            self._conns.clear()


@pytest.fixture
def proxied_app(tmp_path: Path) -> Iterator[tuple[Flask, Proxy]]:
    url = _pg_url_existing()
    proxy = Proxy(("127.0.0.1", 5432))
    proxy.start()
    settings = Settings(
        instance_path=tmp_path,
        database_url=url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
        redis_url=REDIS_TEST_URL,
    )
    app = create_app(settings)
    with app.app_context():
        upgrade(get_runtime().engine)
    yield app, proxy
    with app.app_context():
        get_runtime().close()


def test_database_outage_is_503_with_retry_after_and_recovers(
    proxied_app: tuple[Flask, Proxy],
) -> None:
    app, proxy = proxied_app
    settings: Settings = app.config["SETTINGS"]
    hdrs = {
        "Authorization": "Bearer " + mint_token(settings, roles=("ADMIN",), tenants=("outage",)),
        "X-Tenant-ID": "outage",
    }
    client = app.test_client()
    created = client.post("/fhir/R4/Patient", json=patient(), headers=hdrs)
    assert created.status_code == 201
    url = f"/fhir/R4/Patient/{created.json['id']}"

    proxy.stop()
    started = time.monotonic()
    for call in (
        lambda: client.get(url, headers=hdrs),
        lambda: client.post("/fhir/R4/Patient", json=patient(), headers=hdrs),
    ):
        r = call()
        assert r.status_code == 503, r.json
        assert r.headers["Retry-After"]
        assert r.json["issue"][0]["details"]["coding"][0]["code"] == "SERVICE_UNAVAILABLE"
    assert time.monotonic() - started < 15, "requests must fail fast, not hang"
    ready = client.get("/readyz")
    assert ready.status_code == 503

    proxy.start()  # same port
    r = client.get(url, headers=hdrs)
    assert r.status_code == 200, r.json
    assert client.get("/readyz").status_code == 200
