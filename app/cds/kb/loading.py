"""Reading the knowledge files: JSON with duplicate keys rejected, each file checked against
its JSON Schema (draft 2020-12, shipped in `knowledge/schema/`), then handed to
`app.cds.kb.checks` for the cross-checks a schema cannot express. Nothing is read at import.

Overlays: product tables with the shape of `products.json` (the RxNorm importer writes one to
the instance folder) are validated with the same schema and merged over the shipped table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from app.cds.kb.base import KnowledgeBase
from app.cds.kb.checks import Builder
from app.cds.kb.model import KnowledgeError, json_path

DEFAULT_DIRECTORY: Final = Path(__file__).parent.parent / "knowledge"
# Schemas are part of the code's contract, so they always come from the package, even when
# the data is loaded from another directory.
SCHEMA_DIRECTORY: Final = DEFAULT_DIRECTORY / "schema"
FILES: Final = (
    "drugs",
    "classes",
    "interactions",
    "allergy_codes",
    "products",
    "dosing",
    "duplicates",
)


def load_knowledge(directory: Path | None = None, overlays: Sequence[Path] = ()) -> KnowledgeBase:
    """Load, validate and cross-check the knowledge files; raise `KnowledgeError` on any problem.

    `directory` defaults to the knowledge shipped with the package (tests point it at edited
    copies). The schemas always come from the package. `overlays` are product tables (the
    RxNorm import) merged over `products.json`; a missing overlay file is skipped.
    """
    base = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    documents: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in FILES:
        path = base / f"{name}.json"
        label = _display_path(path)
        documents[name] = (label, _load_document(path, label, _schema_validator(name)))
    extra: list[tuple[str, dict[str, Any]]] = []
    for overlay in overlays:
        path = Path(overlay)
        if path.exists():
            label = _display_path(path)
            extra.append((label, _load_document(path, label, _schema_validator("products"))))
    return Builder(documents, extra).build()


def _schema_validator(name: str) -> Draft202012Validator:
    path = SCHEMA_DIRECTORY / f"{name}.schema.json"
    label = _display_path(path)
    schema = _parse_json(path, label)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise KnowledgeError(label, json_path(exc.absolute_path), exc.message) from exc
    return Draft202012Validator(schema)


def _load_document(path: Path, label: str, validator: Draft202012Validator) -> dict[str, Any]:
    data = _parse_json(path, label)
    errors = list(validator.iter_errors(data))
    if errors:
        error = best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise KnowledgeError(label, json_path(error.absolute_path), error.message + more)
    if not isinstance(data, dict):  # pragma: no cover - every schema requires an object
        raise KnowledgeError(label, "$", "expected a JSON object")
    return data


def _parse_json(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KnowledgeError(label, "$", "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(label, "$", f"cannot read file: {exc}") from exc
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise KnowledgeError(
            label, "$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:
        raise KnowledgeError(label, "$", f"malformed JSON: {exc}") from exc
    duplicate = _first_duplicate_key(data)
    if duplicate is not None:
        where, key = duplicate
        raise KnowledgeError(label, where, f"duplicate key {key!r} (a later value would hide it)")
    return data


class _DuplicateKeys(dict[str, Any]):
    """A parsed JSON object that had repeated keys (json would keep only the last silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    duplicates: list[str] = []
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    if duplicates:
        marked = _DuplicateKeys(result)
        marked.duplicates = duplicates
        return marked
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _first_duplicate_key(data: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _DuplicateKeys):
            return json_path(path), node.duplicates[0]
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return None


def _display_path(path: Path) -> str:
    """The path as an operator would type it: relative to the working directory if inside it."""
    try:
        return path.resolve().relative_to(Path(os.getcwd()).resolve()).as_posix()
    except ValueError:
        return str(path)
