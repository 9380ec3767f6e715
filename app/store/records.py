"""What the store hands back: one stored version of a resource, and a page of a search."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from app.store.search.query import Cursor


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource. Read paths that only pass the document on (GET by id, a
    search page) fetch it as the stored JSON text (`raw`) and never parse it: `content`
    parses on first use, `json` hands the text to the response as it is."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    doc: dict[str, Any] | None
    patient_id: str | None = None
    sort_date: datetime | None = None
    raw: str | None = None

    @cached_property
    def content(self) -> dict[str, Any]:
        if self.doc is not None:
            return self.doc
        assert self.raw is not None
        parsed: dict[str, Any] = orjson.loads(self.raw)
        return parsed

    @property
    def json(self) -> dict[str, Any] | orjson.Fragment:
        """The document for a response body: the stored text untouched when it was read as
        text (no parse and re-serialisation), else the dict."""
        if self.raw is not None and self.doc is None:
            return orjson.Fragment(self.raw)
        return self.content

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def versioned_reference(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


@dataclass
class SearchPage:
    resources: list[StoredResource]
    total: int | None
    next_cursor: Cursor | None
    prev_cursor: Cursor | None
    included: list[StoredResource] = field(default_factory=list)


class IdTaken(Exception):
    """A create raced another create of the same id (update-as-create)."""
