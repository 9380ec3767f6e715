"""A real HTTP subscriber on loopback for the subscription tests and the benchmark: it
records every notification POSTed to it, and can fail its first N calls."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, fail_first: int = 0, fail_status: int = 503, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay = delay
        self.fail_status = fail_status
        self.calls = 0
        self.received: list[dict[str, Any]] = []  # accepted bundles, in arrival order
        self.headers: list[dict[str, str]] = []
        self.arrived_at: list[float] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer.lock:
                    outer.calls += 1
                    failing = outer.calls <= outer.fail_first
                    if not failing:
                        outer.received.append(json.loads(body))
                        outer.headers.append(dict(self.headers.items()))
                        outer.arrived_at.append(time.time())
                if outer.delay:
                    time.sleep(outer.delay)  # a slow subscriber: the sender waits
                self.send_response(outer.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------------ reading
    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.received if notification_type(b) == kind]

    def events(self) -> list[tuple[int, str]]:
        """(event number, focus reference) of every event received, in arrival order."""
        out: list[tuple[int, str]] = []
        for b in self.of_type("event-notification"):
            out += bundle_events(b)
        return out

    def wait_for(self, n_events: int, timeout: float = 20.0) -> list[tuple[int, str]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.events()
            if len({number for number, _ in got}) >= n_events:
                return got
            time.sleep(0.05)
        return self.events()


def _status(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][0]["resource"]
    return resource


def notification_type(bundle: dict[str, Any]) -> str:
    return str(next(p["valueCode"] for p in _status(bundle)["parameter"] if p["name"] == "type"))


def bundle_events(bundle: dict[str, Any]) -> list[tuple[int, str]]:
    out = []
    for p in _status(bundle)["parameter"]:
        if p["name"] != "notification-event":
            continue
        parts = {q["name"]: q for q in p["part"]}
        focus = parts.get("focus", {}).get("valueReference", {}).get("reference", "")
        out.append((int(parts["event-number"]["valueString"]), focus))
    return out
