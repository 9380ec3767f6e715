"""The resource store every face sits on: tables, the repository (tenant and patient
scoping, version compare-and-set, conditional keys), search, and the PostgreSQL flush.

Services reach storage only through `Repository` (in a UnitOfWork); nothing above this
package writes SQL.
"""

from app.store.records import IdTaken, SearchPage, StoredResource
from app.store.repository import Repository

__all__ = ["IdTaken", "Repository", "SearchPage", "StoredResource"]
