"""Loads `search_parameters.json`: which parameters each resource type supports and how."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import orjson

ParamType = Literal["token", "reference", "date", "string"]
DEFINITIONS_FILE = Path(__file__).resolve().parent / "search_parameters.json"


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    target: tuple[str, ...] = ()
    column: str | None = None
    #: Values computed from the whole resource by a named function (extract.DERIVED) for
    #: what no path can say, e.g. the order types of an order set's contained templates.
    derived: str | None = None


@dataclass(frozen=True)
class ResourceSearch:
    resource_type: str
    params: dict[str, SearchParam]
    #: Path whose Patient reference places the resource in a patient's compartment;
    #: `_self` for Patient, `_target` for Provenance (the writer supplies it), None for none.
    compartment: str | None
    #: Date parameter kept in resources.sort_date (for `_sort` and keyset paging).
    sort: str | None


@cache
def load_definitions() -> dict[str, ResourceSearch]:
    raw = orjson.loads(DEFINITIONS_FILE.read_bytes())
    out: dict[str, ResourceSearch] = {}
    for rtype, spec in raw.items():
        if rtype.startswith("_"):
            continue
        params = {}
        for name, p in spec["params"].items():
            paths = p["path"] if isinstance(p["path"], list) else [p["path"]]
            params[name] = SearchParam(
                name=name,
                type=p["type"],
                paths=tuple(paths),
                target=tuple(p.get("target", ())),
                column=p.get("column"),
                derived=p.get("derived"),
            )
        sort = spec.get("sort")
        if sort is not None and sort not in params:
            raise ValueError(f"{rtype}: sort parameter {sort!r} is not defined")
        out[rtype] = ResourceSearch(rtype, params, spec.get("compartment"), sort)
    return out


def for_type(resource_type: str) -> ResourceSearch:
    return load_definitions()[resource_type]
