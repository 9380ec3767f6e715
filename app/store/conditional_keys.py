"""Conditional keys: the unique rows that make conditional create and client mutation keys
race-safe (one creator per key, whatever the timing). Part of `Repository`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy import update as sql_update

from app.store.connection import StoreConnection
from app.store.statements import CK, CLAIM_KEY


class ConditionalKeys(StoreConnection):
    def key_owner(self, resource_type: str, key: str) -> tuple[str, str | None] | None:
        """(resource id, payload hash) holding a key, if any."""
        row = self._execute(
            select(CK.c.res_id, CK.c.payload_hash).where(
                CK.c.tenant_id == self.tenant_id, CK.c.res_type == resource_type, CK.c.key == key
            )
        ).first()
        return (row.res_id, row.payload_hash) if row else None

    def claim_conditional_key(
        self, resource_type: str, key: str, rid: str, payload_hash: str | None = None
    ) -> bool:
        """Insert the key row; False if another transaction holds it (it then wins).

        `INSERT … ON CONFLICT DO NOTHING` (PostgreSQL and SQLite): on PostgreSQL a concurrent
        insert of the same key blocks until the first commits, then inserts nothing here:
        exactly one creator per key, whatever the timing — in one round trip, no savepoint.
        """
        self._writable()
        row = {
            "tenant_id": self.tenant_id,
            "res_type": resource_type,
            "key": key,
            "res_id": rid,
            "payload_hash": payload_hash,
        }
        result = self._execute(CLAIM_KEY[self.conn.dialect.name], row)
        return bool(result.rowcount == 1)

    def reassign_conditional_key(self, resource_type: str, key: str, rid: str) -> None:
        self._writable()
        self._execute(
            sql_update(CK)
            .where(
                CK.c.tenant_id == self.tenant_id, CK.c.res_type == resource_type, CK.c.key == key
            )
            .values(res_id=rid)
        )
