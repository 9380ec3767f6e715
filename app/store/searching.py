"""Search: a parsed SearchQuery turned into statements, with keyset paging, totals and
_include/_revinclude. Column-only searches (`patient`, `status`, `_id`) reuse a statement
cached per shape; anything that needs the index tables is composed per call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
)
from sqlalchemy import tuple_ as sql_tuple

from app.store.connection import StoreConnection
from app.store.records import SearchPage, StoredResource
from app.store.search import definitions
from app.store.search.query import Criterion, Cursor, DateValue, SearchQuery
from app.store.statements import (
    DT,
    RAW_ROW,
    REF,
    STR,
    TOK,
    R,
)


class ResourceSearch(StoreConnection):
    # ---------------------------------------------------------------- search
    def search(self, query: SearchQuery) -> SearchPage:
        shape = _column_shape(query)
        if shape is not None and not query.summary_count:
            return self._column_page(query, shape)
        where = self._scoped(query.resource_type)
        for criterion in query.criteria:
            where.append(self._criterion(query.resource_type, criterion))
        if query.summary_count:
            return SearchPage([], self._count(where), None, None)
        return self._page(query, where)

    def _column_page(self, query: SearchQuery, shape: tuple[Any, ...]) -> SearchPage:
        """A page of a search on the resource table's own columns only (`_id`, the
        patient, `status` — what an EHR asks most: `patient=…&status=…`): the statement is
        built once per shape with bind parameters and reused, instead of composing and
        cache-keying a SQLAlchemy expression per request (a fifth of a search's CPU)."""
        scoped = self.patient_scope is not None
        binds = self._binds(query.resource_type)
        for n, criterion in enumerate(query.criteria):
            values = _column_values(criterion)
            if values:
                binds[f"b_c{n}"] = values
        cursor = query.cursor
        if cursor is not None:
            binds["b_cursor_id"] = cursor.id
            if query.sort_column != "id":
                binds["b_cursor_key"] = _decode_key(query.sort_column, cursor.key)
        binds["b_limit"] = query.count + 1
        rows = self._execute(_column_statement(shape, scoped), binds).all()
        return self._finish_page(query, rows, lambda: self._count_binds(shape, scoped, binds))

    def _count_binds(self, shape: tuple[Any, ...], scoped: bool, binds: dict[str, Any]) -> int:
        stmt = _column_count(shape[0], scoped)
        wanted = {k: v for k, v in binds.items() if not k.startswith(("b_cursor", "b_limit"))}
        return int(self._execute(stmt, wanted).scalar_one())

    def _count(self, where: list[ColumnElement[bool]], table: Table = R) -> int:
        stmt = select(func.count()).select_from(table).where(*where)
        return int(self._execute(stmt).scalar_one())

    def search_all(self, query: SearchQuery, *, page_size: int = 1000) -> list[StoredResource]:
        """Every match, following keyset pages to the end: for checks that must see all of
        a patient's orders (decision support), where a page cap would hide some. The
        caller's query is left as it was (paging works on a copy)."""
        query = dataclasses.replace(query, with_total=False, count=page_size, cursor=None)
        found: list[StoredResource] = []
        while True:
            page = self.search(query)
            found += page.resources
            if page.next_cursor is None:
                return found
            query.cursor = page.next_cursor

    def _page(
        self,
        query: SearchQuery,
        where: list[ColumnElement[bool]],
        *,
        table: Table = R,
        columns: Sequence[Any] = RAW_ROW,
        sort_col: Any = None,
        to_resource: Callable[[Any], StoredResource] | None = None,
    ) -> SearchPage:
        """One page by keyset; with `total`, the count rides along as a scalar subquery of
        the same statement (one round trip, one snapshot). Another table than `resources`
        (the audit trail's) names its columns, sort column and row conversion (`_paged`)."""
        cursor = query.cursor
        backwards = cursor is not None and cursor.direction == "prev"
        after = None
        if cursor is not None:
            after = (_decode_key(query.sort_column, cursor.key), cursor.id)
        stmt = _paged(
            where,
            sort_column=query.sort_column,
            descending=query.descending != backwards,
            with_total=query.with_total,
            after=after,
            limit=query.count + 1,
            table=table,
            columns=columns,
            sort_col=sort_col,
        )
        rows = self._execute(stmt).all()
        return self._finish_page(query, rows, lambda: self._count(where, table), to_resource)

    def _finish_page(
        self,
        query: SearchQuery,
        rows: list[Any],
        count: Callable[[], int],
        to_resource: Callable[[Any], StoredResource] | None = None,
    ) -> SearchPage:
        """Rows (at most one more than a page, with `total` when asked) → SearchPage;
        `to_resource` turns a row into a resource (default: a `RAW_ROW` row, `_row`)."""
        cursor = query.cursor
        backwards = cursor is not None and cursor.direction == "prev"
        total = None
        if query.with_total:
            # No row, no count: zero unless a cursor has walked past the last match.
            total = rows[0].total if rows else (count() if cursor else 0)
        more = len(rows) > query.count
        found = [(to_resource or self._row)(r) for r in rows[: query.count]]
        if backwards:
            found.reverse()
        has_next = more if not backwards else True
        has_prev = (cursor is not None) if not backwards else more
        page = SearchPage(found, total, None, None)
        if found and query.count:
            if has_next:
                page.next_cursor = self._cursor("next", query, found[-1])
            if has_prev:
                page.prev_cursor = self._cursor("prev", query, found[0])
        page.included = self._includes(query, found)
        return page

    @staticmethod
    def _cursor(direction: str, query: SearchQuery, res: StoredResource) -> Cursor:
        if query.sort_column == "id":
            key: Any = None
        elif query.sort_column == "last_updated":
            key = res.last_updated.isoformat()
        else:
            assert res.sort_date is not None  # rows read by search always carry it
            key = res.sort_date.isoformat()
        return Cursor(direction, query.sort_param, key, res.id)

    def _criterion(self, resource_type: str, c: Criterion) -> ColumnElement[bool]:
        if c.kind == "id":
            return R.c.id.in_(c.values)
        if c.kind == "lastUpdated":
            return and_(*[_point_cond(R.c.last_updated, v) for v in c.values])
        assert c.param is not None
        param = c.param
        if c.kind == "has":
            return R.c.id.in_(self._referenced_by(resource_type, c))
        if c.kind == "token" and param.column == "status":
            codes = [v.code for v in c.values if v.code is not None]
            return R.c.status.in_(codes) if codes else R.c.status.is_not(None)
        if c.kind == "reference" and param.column == "patient_id":
            ids = [v.id for v in c.values if v.type in (None, "Patient")]
            return R.c.patient_id.in_(ids) if ids else false()
        table, conds = self._index_conds(c)
        sub = select(table.c.res_id).where(
            table.c.tenant_id == self.tenant_id,
            table.c.res_type == resource_type,
            table.c.param == param.name,
            or_(*conds),
        )
        return R.c.id.in_(sub)

    def _referenced_by(self, resource_type: str, c: Criterion) -> Select[Any]:
        """Ids of `resource_type` that a source resource with a matching token references:
        the source's token rows (primary key) → its reference rows (`ix_sp_reference_res`)."""
        assert c.via is not None and c.param is not None
        source_type, reference_param = c.via
        _table, conds = self._index_conds(dataclasses.replace(c, kind="token"))
        sources = select(TOK.c.res_id).where(
            TOK.c.tenant_id == self.tenant_id,
            TOK.c.res_type == source_type,
            TOK.c.param == c.param.name,
            or_(*conds),
        )
        return select(REF.c.ref_id).where(
            REF.c.tenant_id == self.tenant_id,
            REF.c.res_type == source_type,
            REF.c.res_id.in_(sources),
            REF.c.param == reference_param,
            REF.c.ref_type == resource_type,
        )

    @staticmethod
    def _index_conds(c: Criterion) -> tuple[Any, list[ColumnElement[bool]]]:
        conds: list[ColumnElement[bool]] = []
        if c.kind == "token":
            for v in c.values:
                parts = []
                if v.code is not None:
                    parts.append(TOK.c.code == v.code)
                if v.system is not None:
                    parts.append(TOK.c.system == v.system)
                conds.append(and_(*parts))
            return TOK, conds
        if c.kind == "reference":
            for v in c.values:
                parts = [REF.c.ref_id == v.id]
                if v.type:
                    parts.append(REF.c.ref_type == v.type)
                conds.append(and_(*parts))
            return REF, conds
        if c.kind == "date":
            return DT, [_range_cond(DT.c.low, DT.c.high, v) for v in c.values]
        for v in c.values:
            if c.modifier == "exact":
                conds.append(STR.c.exact == v)
            elif c.modifier == "contains":
                conds.append(STR.c.value.contains(v, autoescape=True))
            else:
                conds.append(STR.c.value.startswith(v, autoescape=True))
        return STR, conds

    def _includes(self, query: SearchQuery, found: list[StoredResource]) -> list[StoredResource]:
        if not found or not (query.includes or query.revincludes):
            return []
        ids = [r.id for r in found]
        refs: set[tuple[str, str]] = set()
        for inc in query.includes:
            stmt = select(REF.c.ref_type, REF.c.ref_id).where(
                REF.c.tenant_id == self.tenant_id,
                REF.c.res_type == query.resource_type,
                REF.c.param == inc.param,
                REF.c.res_id.in_(ids),
            )
            if inc.target_type:
                stmt = stmt.where(REF.c.ref_type == inc.target_type)
            refs.update(
                (t, i) for t, i in self._execute(stmt).all() if t in definitions.load_definitions()
            )
        for inc in query.revincludes:
            stmt = select(REF.c.res_id).where(
                REF.c.tenant_id == self.tenant_id,
                REF.c.res_type == inc.source_type,
                REF.c.param == inc.param,
                REF.c.ref_type == query.resource_type,
                REF.c.ref_id.in_(ids),
            )
            refs.update((inc.source_type, i) for i in self._execute(stmt).scalars())
        seen = {(r.resource_type, r.id) for r in found}
        return self.fetch_many(refs - seen)


def _decode_key(column: str, key: Any) -> Any:
    if column in ("last_updated", "sort_date"):
        return datetime.fromisoformat(key)
    return key


def _point_cond(col: Any, v: DateValue) -> ColumnElement[bool]:
    """Prefix semantics for a column holding an instant (search.html#prefix)."""
    table: dict[str, ColumnElement[bool]] = {
        "eq": and_(col >= v.low, col < v.high),
        "ne": or_(col < v.low, col >= v.high),
        "gt": col >= v.high,
        "sa": col >= v.high,
        "lt": col < v.low,
        "eb": col < v.low,
        "ge": col >= v.low,
        "le": col < v.high,
    }
    return table[v.prefix]


def _range_cond(low: Any, high: Any, v: DateValue) -> ColumnElement[bool]:
    """Prefix semantics for an indexed range [low, high) against the search range."""
    table: dict[str, ColumnElement[bool]] = {
        "eq": and_(low >= v.low, high <= v.high),
        "ne": or_(low < v.low, high > v.high),
        "gt": high > v.high,
        "lt": low < v.low,
        "ge": high > v.low,
        "le": low < v.high,
        "sa": low >= v.high,
        "eb": high <= v.low,
    }
    return table[v.prefix]


# ------------------------------------------------------------------ column-only searches
def is_column(c: Criterion) -> bool:
    """Answered by the resource table's own columns (see `Repository._criterion`)."""
    if c.kind == "id":
        return True
    if c.param is None:
        return False
    return (c.kind == "token" and c.param.column == "status") or (
        c.kind == "reference" and c.param.column == "patient_id"
    )


def _column_values(c: Criterion) -> list[str]:
    """The bound values of a column criterion (empty: it matches on presence, or nothing)."""
    if c.kind == "id":
        return list(c.values)
    if c.kind == "token":
        return [v.code for v in c.values if v.code is not None]
    return [v.id for v in c.values if v.type in (None, "Patient")]


def _column_shape(query: SearchQuery) -> tuple[Any, ...] | None:
    """What the statement of a column-only search depends on besides bound values, or None
    when a criterion needs the index tables (those keep the general path)."""
    if not all(is_column(c) for c in query.criteria):
        return None
    kinds = tuple(
        (c.kind if c.kind == "id" else c.param.column if c.param else "", bool(_column_values(c)))
        for c in query.criteria
    )
    cursor = query.cursor
    direction = None if cursor is None else cursor.direction
    return (kinds, query.sort_column, query.descending, direction, query.with_total)


def _column_where(kinds: tuple[tuple[str, bool], ...], scoped: bool) -> list[Any]:
    where: list[Any] = [
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
    ]
    if scoped:
        where.append(R.c.patient_id == bindparam("b_patient"))
    for n, (column, has_values) in enumerate(kinds):
        col = R.c[column]
        if has_values:
            where.append(col.in_(bindparam(f"b_c{n}", expanding=True)))
        elif column == "status":
            where.append(col.is_not(None))  # a status criterion with no code: any status
        else:
            where.append(false())  # a patient criterion naming no Patient: no match
    return where


@functools.lru_cache(maxsize=256)
def _column_count(kinds: tuple[tuple[str, bool], ...], scoped: bool) -> Select[Any]:
    return select(func.count()).select_from(R).where(*_column_where(kinds, scoped))


@functools.lru_cache(maxsize=512)
def _column_statement(shape: tuple[Any, ...], scoped: bool) -> Select[Any]:
    """The page statement of one column-only search shape (`Repository._page`'s query with
    bind parameters: same filters, keyset condition, order and count subquery)."""
    kinds, sort_column, descending_sort, direction, with_total = shape
    after: tuple[Any, Any] | None = None
    if direction is not None:
        key_type = R.c[sort_column].type
        after = (bindparam("b_cursor_key", type_=key_type), bindparam("b_cursor_id"))
    return _paged(
        _column_where(kinds, scoped),
        sort_column=sort_column,
        descending=descending_sort != (direction == "prev"),
        with_total=with_total,
        after=after,
        limit=bindparam("b_limit"),
    )


def _paged(
    where: list[Any],
    *,
    sort_column: str,
    descending: bool,
    with_total: bool,
    after: tuple[Any, Any] | None,
    limit: Any,
    table: Table = R,
    columns: Sequence[Any] = RAW_ROW,
    sort_col: Any = None,
) -> Select[Any]:
    """One keyset page: the rows after (sort key, id) in the wanted order, and with `total`
    the count as a scalar subquery of the same statement (one round trip, one snapshot).
    The resource table by default; another table (the audit trail's) names its `columns`
    and the column behind `sort_column`."""
    id_col = table.c.id
    if sort_col is None:
        sort_col = table.c[sort_column]
    stmt: Select[Any] = select(*columns).where(*where)
    if with_total:
        count = select(func.count()).select_from(table).where(*where).scalar_subquery()
        stmt = stmt.add_columns(count.label("total"))
    if after is not None:
        key, rid = after
        if sort_column == "id":
            cond = id_col < rid if descending else id_col > rid
        else:
            left, right = sql_tuple(sort_col, id_col), sql_tuple(key, rid)
            cond = left < right if descending else left > right
        stmt = stmt.where(cond)
    order = [sort_col.desc(), id_col.desc()] if descending else [sort_col.asc(), id_col.asc()]
    if sort_column == "id":
        order = order[:1]
    return stmt.order_by(*order).limit(limit)
