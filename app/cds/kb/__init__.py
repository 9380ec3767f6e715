"""The knowledge base, split by role: model (types), loading (files, schemas, overlays),
checks (cross-checks and assembly), base (the indexed view). Import from app.cds.knowledge_base."""
