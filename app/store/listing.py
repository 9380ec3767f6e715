"""Numbered pages, newest first, across one or more resource types, paged in the database.

The legacy lists (`/v1/orders`, `/v1/order-sets`, `/v1/orders/referrals`) are numbered
(`page`, `pageSize`) and newest first across the three order resource types, which keyset
cursors per type cannot give. Ids are ULIDs, so `id` descending is creation order across
types. Each type's matches are read in that order from an index on `resources` and cut
at `offset + limit` inside the database; the parts are merged by id and only the page's
keys come back, then the page's rows by primary key, then the total. Nothing is capped:
page 11 of 100 is rows 1,001 to 1,100 whatever the table holds.

Plans must not depend on statistics (this deployment runs without ANALYZE): with none,
PostgreSQL estimates one row everywhere and turned `id IN (SELECT res_id FROM sp_token …)`
into nested loops that scanned a whole index per row (minutes for 1,000 referrals). So
every index-table filter here is a correlated probe, `(SELECT 1 … WHERE res_id =
resources.id LIMIT 1) IS NOT NULL`, which the planner cannot pull up into a join: the
driving scan is the `resources` index in id order, and each candidate costs one lookup
per filter in the index tables' primary keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, or_, select, union_all

from app.store.records import StoredResource
from app.store.search.query import Criterion, SearchQuery
from app.store.searching import ResourceSearch, is_column
from app.store.statements import REF, TOK, R


class NumberedPages(ResourceSearch):
    def newest_first(
        self, queries: Sequence[SearchQuery], *, offset: int, limit: int
    ) -> tuple[list[StoredResource], int]:
        """Rows `offset … offset + limit` of the union of `queries` (each one resource type;
        their sort and count are ignored) in descending id order, and the total match count.
        """
        if not queries:
            return [], 0
        wheres = [self._probing_where(q) for q in queries]
        parts = []
        for where in wheres:
            part = (
                select(R.c.res_type, R.c.id)
                .where(*where)
                .order_by(R.c.id.desc())
                .limit(offset + limit)
                .subquery()
            )
            parts.append(select(part.c.res_type, part.c.id))
        keys = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
        page = self._execute(
            select(keys.c.res_type, keys.c.id)
            .order_by(keys.c.id.desc(), keys.c.res_type)
            .offset(offset)
            .limit(limit)
        ).all()
        counts = [select(func.count()).select_from(R).where(*w).scalar_subquery() for w in wheres]
        total = int(self._execute(select(_sum(counts))).scalar_one())
        wanted = [(k.res_type, k.id) for k in page]
        by_key = {(r.resource_type, r.id): r for r in self.fetch_many(wanted)}
        return [by_key[k] for k in wanted if k in by_key], total

    def _probing_where(self, query: SearchQuery) -> list[ColumnElement[bool]]:
        where = self._scoped(query.resource_type)
        for c in query.criteria:
            if c.kind in ("id", "lastUpdated") or is_column(c):
                where.append(self._criterion(query.resource_type, c))
            else:
                where.append(self._probe(query.resource_type, c))
        return where

    def _probe(self, resource_type: str, c: Criterion) -> ColumnElement[bool]:
        """The criterion as a lookup keyed on this row's id (see the module docstring)."""
        assert c.param is not None
        if c.kind == "has":
            assert c.via is not None
            source_type, reference_param = c.via
            _table, conds = self._index_conds(dataclasses.replace(c, kind="token"))
            source_matches = select(literal(1)).where(
                TOK.c.tenant_id == self.tenant_id,
                TOK.c.res_type == source_type,
                TOK.c.param == c.param.name,
                TOK.c.res_id == REF.c.res_id,
                or_(*conds),
            )
            # Ordered as the primary key (tenant, type, param, ref_id, …) is: with no
            # statistics every index looks equally cheap, and `ix_sp_reference_res` (which
            # cannot seek on ref_id) would scan every reference of the type per row; an
            # order only the primary key delivers without a sort makes it the cheapest.
            return _present(
                select(literal(1))
                .where(
                    REF.c.tenant_id == self.tenant_id,
                    REF.c.res_type == source_type,
                    REF.c.param == reference_param,
                    REF.c.ref_id == R.c.id,
                    REF.c.ref_type == resource_type,
                    _present(source_matches),
                )
                .order_by(REF.c.tenant_id, REF.c.res_type, REF.c.param, REF.c.ref_id)
            )
        table, conds = self._index_conds(c)
        return _present(
            select(literal(1)).where(
                table.c.tenant_id == self.tenant_id,
                table.c.res_type == resource_type,
                table.c.param == c.param.name,
                table.c.res_id == R.c.id,
                or_(*conds),
            )
        )


def _present(probe: Select[Any]) -> ColumnElement[bool]:
    """`(SELECT 1 … LIMIT 1) IS NOT NULL`: a scalar subquery with a LIMIT is never pulled up
    into a join, so it stays a per-row lookup whatever the planner estimates."""
    return probe.limit(1).scalar_subquery().is_not(None)


def _sum(counts: list[Any]) -> Any:
    total = counts[0]
    for count in counts[1:]:
        total = total + count
    return total
