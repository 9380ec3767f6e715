"""The CDS knowledge base: drugs, products, classes, interactions, allergy codes, dosing and
duplicate-therapy tables, shipped as data.

Why data and not code: every rule cites its source and a pharmacist can review a JSON file
without reading Python. Why a strict loader: a bad edit must stop start-up with the file,
the JSON path and the problem (`KnowledgeError`) — a silently dropped rule means a missed
alert, which is the worst failure a CDS can have.

The implementation is split by role: `app.cds.kb.model` (the data types), `app.cds.kb.loading`
(reading and schema validation, overlays), `app.cds.kb.checks` (cross-checks and assembly),
`app.cds.kb.base` (the indexed `KnowledgeBase`). This module is the one import point.
"""

from __future__ import annotations

from app.cds.kb.base import KnowledgeBase
from app.cds.kb.loading import DEFAULT_DIRECTORY, FILES, SCHEMA_DIRECTORY, load_knowledge
from app.cds.kb.model import (
    RXNORM_SYSTEM,
    SEVERITIES,
    SNOMED_SYSTEM,
    AgeRule,
    Allergen,
    CrossReactivity,
    Drug,
    DrugClass,
    Interaction,
    KnowledgeError,
    MaxDailyDose,
    MinInterval,
    TherapyGroup,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "FILES",
    "RXNORM_SYSTEM",
    "SCHEMA_DIRECTORY",
    "SEVERITIES",
    "SNOMED_SYSTEM",
    "AgeRule",
    "Allergen",
    "CrossReactivity",
    "Drug",
    "DrugClass",
    "Interaction",
    "KnowledgeBase",
    "KnowledgeError",
    "MaxDailyDose",
    "MinInterval",
    "TherapyGroup",
    "load_knowledge",
]
