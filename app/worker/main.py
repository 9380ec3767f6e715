"""The delivery loop: run steps while there is work, sleep `poll` seconds when idle, stop
cleanly on SIGTERM/SIGINT (the step in flight finishes or rolls back; nothing is lost)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from app.db import Database, make_engine
from app.services.delivery import Delivery
from app.settings import Settings
from app.worker.http import HttpSender

log = logging.getLogger("orders.worker")


def build(settings: Settings, sender: HttpSender) -> tuple[Delivery, Database]:
    database = Database(make_engine(settings))
    base = f"{settings.public_base_url}/fhir/R4" if settings.public_base_url else ""
    return Delivery(database, settings.endpoint_policy, sender, base_url=base), database


def run(settings: Settings, *, poll: float = 0.5, once: bool = False) -> int:
    """Deliver until stopped (or, with `once`, until nothing is due); returns steps done."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker stopping (signal %s)", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    sender = HttpSender()
    delivery, database = build(settings, sender)
    steps = 0
    try:
        while not stop.is_set():
            try:
                worked = delivery.run_once()
            except Exception:  # a database outage: log, wait, try again
                log.exception("delivery step failed")
                stop.wait(poll)
                continue
            steps += worked
            if not worked:
                if once:
                    break
                stop.wait(poll)
    finally:
        sender.close()
        database.engine.dispose()
    return steps
