"""JSON from a client, parsed once for every face, with a nesting limit (issue 11, item 13).

orjson accepts documents nested up to 1024 levels; code that walks a resource recursively
(validation, search extraction, mappings) would then hit Python's recursion limit and answer
500. No FHIR resource or legacy payload this server takes nests anywhere near 64 levels
(an extension inside an extension inside an element is about 10), so deeper input is
refused as 400 with a clear message before anything walks it.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import Issue, ValidationFailed

MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `value` nests objects/arrays more than `limit` deep (iterative: no
    recursion, whatever the input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(raw: bytes | str, what: str = "The body") -> Any:
    """Parse client JSON; 400 VALIDATION_ERROR when malformed or nested too deep."""
    too_deep = f"{what} nests JSON objects/arrays more than {MAX_JSON_DEPTH} levels deep"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own limit (1024) says the same thing
            raise ValidationFailed(too_deep, issues=[Issue(too_deep)]) from exc
        message = f"{what} is not valid JSON"
        raise ValidationFailed(message, issues=[Issue(f"{message}: {exc}")]) from exc
    if json_depth_exceeds(value):
        raise ValidationFailed(too_deep, issues=[Issue(too_deep)])
    return value
