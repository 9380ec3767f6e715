"""The resource store every face sits on: tables, the repository (tenant and patient
scoping, version compare-and-set, conditional keys), search, and the PostgreSQL flush;
and the subscription outbox (outbox.py, its own tables in outbox_tables.py).

Services reach storage only through `Repository`, `EventStore`, `EventNumbering` and
`DeliveryQueue`; nothing above this package writes SQL.
"""

from app.store.outbox import DeliveryQueue, EventNumbering, EventStore, NewEvent
from app.store.records import IdTaken, SearchPage, StoredResource
from app.store.repository import Repository

__all__ = [
    "DeliveryQueue",
    "EventNumbering",
    "EventStore",
    "IdTaken",
    "NewEvent",
    "Repository",
    "SearchPage",
    "StoredResource",
]
