"""Where the conformance documents (capability/: the CapabilityStatement, the
OperationDefinitions, the OpenAPI document of /api/v1) are read from.

`app/capability` is a symlink to the repository's top-level `capability/` folder in a
checkout, and a real folder of package data in a built wheel (setuptools copies the files
it points at), so an installed server serves the same documents as a checkout.
"""

from __future__ import annotations

from pathlib import Path

CAPABILITY_DIR = Path(__file__).resolve().parent / "capability"
