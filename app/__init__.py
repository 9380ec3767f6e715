"""Orders service: a FHIR R4-native clinical orders server."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.settings import Settings  # typing only


def create_app(settings: Settings | None = None) -> Flask:
    """The application (app/factory.py). Imported when called, not with the package, so
    that importing pure code (`app.domain`, the CDS rules, the mutation runner) does not load
    Flask and every face."""
    from app.factory import create_app as build  # see docstring: keeps `import app` light

    return build(settings)
