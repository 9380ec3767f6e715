"""The per-process cache of a tenant's subscriptions (app/services/outbox.py): reloaded
after its age, dropped on invalidation, and never re-filled with a list read before an
invalidation that raced with the load."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from app.services.outbox import SubscriptionIndex


class Loads:
    def __init__(self) -> None:
        self.calls = 0
        self.rows: list[Any] = []
        self.during: Any = None

    def __call__(self) -> list[Any]:
        self.calls += 1
        rows = list(self.rows)
        if self.during is not None:
            self.during()
        return rows


def test_entries_are_reused_until_their_age_then_reloaded() -> None:
    now = [0.0]
    index, load = SubscriptionIndex(ttl=1.0, clock=lambda: now[0]), Loads()
    assert index.get("t", load) == []
    load.rows = [SimpleNamespace(id="s1", topic="urn:x", filters=[])]
    now[0] = 0.9
    assert index.get("t", load) == [] and load.calls == 1
    now[0] = 1.1
    assert [w.id for w in index.get("t", load)] == ["s1"] and load.calls == 2
    assert index.get("other-tenant", load) and load.calls == 3, "tenants are apart"


def test_invalidate_drops_the_entry_and_a_racing_load_does_not_store_stale_rows() -> None:
    index, load = SubscriptionIndex(ttl=60.0, clock=lambda: 0.0), Loads()
    assert index.get("t", load) == []
    load.rows = [SimpleNamespace(id="s1", topic="urn:x", filters=[])]
    index.invalidate("t")
    assert [w.id for w in index.get("t", load)] == ["s1"]
    # A load that read the old list while a subscription write committed and invalidated:
    # its answer is used once, not cached.
    index.invalidate("t")
    load.rows = []
    load.during = lambda: index.invalidate("t")
    assert index.get("t", load) == []
    load.during = None
    load.rows = [SimpleNamespace(id="s2", topic="urn:x", filters=[])]
    assert [w.id for w in index.get("t", load)] == ["s2"]
