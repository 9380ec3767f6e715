"""A bad knowledge file stops start-up with a message naming the file and the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app import create_app
from app.cds.knowledge_base import KnowledgeError
from app.settings import Settings

SHIPPED = Path(__file__).resolve().parents[2] / "app" / "cds" / "knowledge"


def test_bad_knowledge_file_stops_create_app(tmp_path: Path) -> None:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(SHIPPED, knowledge)
    path = knowledge / "interactions.json"
    data = json.loads(path.read_text())
    rules = data["rules"] if isinstance(data, dict) else data
    rules[0]["severity"] = "severe"
    path.write_text(json.dumps(data))
    settings = Settings(
        instance_path=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        extra={"knowledge_dir": str(knowledge)},
    )
    with pytest.raises(KnowledgeError) as err:
        create_app(settings)
    assert "interactions.json" in str(err.value)
    assert "severity" in str(err.value)


def test_shipped_knowledge_starts(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert create_app(settings).extensions["orders"].cds.kb is not None
