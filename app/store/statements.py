"""The store's table handles and its prebuilt statements.

The hot statements are built once, with bind parameters, instead of per call: composing
SQLAlchemy expressions was a measurable share of each request (docs/performance.md).
Every statement filters on `tenant_id` first (and on the caller's patient compartment when
one is bound), so the classes that execute them cannot forget either.
"""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    Delete,
    Select,
    Table,
    Text,
    Update,
    bindparam,
    delete,
    insert,
    or_,
    select,
)
from sqlalchemy import cast as cast_
from sqlalchemy import tuple_ as sql_tuple
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.store.pg_flush import FlushStatement
from app.store.tables import (
    AuditEventRow,
    ConditionalKeyRow,
    DateIndexRow,
    ReferenceIndexRow,
    ResourceRow,
    ResourceVersionRow,
    StringIndexRow,
    TokenIndexRow,
)

R = cast(Table, ResourceRow.__table__)
V = cast(Table, ResourceVersionRow.__table__)
TOK = cast(Table, TokenIndexRow.__table__)
REF = cast(Table, ReferenceIndexRow.__table__)
DT = cast(Table, DateIndexRow.__table__)
STR = cast(Table, StringIndexRow.__table__)
CK = cast(Table, ConditionalKeyRow.__table__)
A = cast(Table, AuditEventRow.__table__)
INDEX_TABLES = (TOK, REF, DT, STR)
#: Flush order: the same for every transaction, so concurrent writers lock tables alike.
#: A write's audit events (`A`) go out in the same statement as the write.
WRITE_ORDER = (R, V, TOK, REF, DT, STR, A)
#: Each index table's value columns, in IndexValues' tuple order.
INDEX_COLUMNS: dict[Table, tuple[str, str, str]] = {
    TOK: ("param", "system", "code"),
    REF: ("param", "ref_type", "ref_id"),
    DT: ("param", "low", "high"),
    STR: ("param", "value", "exact"),
}
#: Which index table holds each search-parameter type's rows.
TABLE_OF_TYPE = {"token": TOK, "reference": REF, "date": DT, "string": STR}


#: A resource row with its document as the stored JSON text (see StoredResource.raw).
RAW_ROW = (
    R.c.res_type,
    R.c.id,
    R.c.version_id,
    R.c.last_updated,
    R.c.patient_id,
    R.c.sort_date,
    cast_(R.c.content, Text).label("raw"),
)


def _by_id(*, scoped: bool, lock: bool) -> Select[Any]:
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id == bindparam("b_id"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    return stmt.with_for_update() if lock else stmt


def _existing(*, scoped: bool) -> Select[Any]:
    stmt = select(R.c.id).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id.in_(bindparam("b_ids", expanding=True)),
    )
    return stmt.where(R.c.patient_id == bindparam("b_patient")) if scoped else stmt


def _compare_and_set(*, scoped: bool) -> Update:
    stmt = sql_update(R).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.id == bindparam("b_id"),
        R.c.version_id == bindparam("b_expected"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    return stmt.values(
        version_id=bindparam("b_version"),
        last_updated=bindparam("b_now"),
        patient_id=bindparam("b_patient_id"),
        status=bindparam("b_status"),
        sort_date=bindparam("b_sort_date"),
        content=bindparam("b_content", type_=R.c.content.type),
    )


def _fetch_many(*, scoped: bool) -> Select[Any]:
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        sql_tuple(R.c.res_type, R.c.id).in_(bindparam("b_refs", expanding=True)),
    )
    return stmt.where(R.c.patient_id == bindparam("b_patient")) if scoped else stmt


def _of_patient(*, scoped: bool, statuses: bool, codes: bool) -> Select[Any]:
    """A patient's resources of one type, optionally with a status among a list and a
    `code` token among (system, code) pairs or bare codes (any system)."""
    stmt = select(*RAW_ROW).where(
        R.c.tenant_id == bindparam("b_tenant"),
        R.c.res_type == bindparam("b_type"),
        R.c.patient_id == bindparam("b_subject"),
    )
    if scoped:
        stmt = stmt.where(R.c.patient_id == bindparam("b_patient"))
    if statuses:
        stmt = stmt.where(R.c.status.in_(bindparam("b_statuses", expanding=True)))
    if codes:
        coded = select(TOK.c.res_id).where(
            TOK.c.tenant_id == bindparam("b_tenant"),
            TOK.c.res_type == bindparam("b_type"),
            TOK.c.param == "code",
            or_(
                sql_tuple(TOK.c.system, TOK.c.code).in_(bindparam("b_pairs", expanding=True)),
                TOK.c.code.in_(bindparam("b_bare", expanding=True)),
            ),
        )
        stmt = stmt.where(R.c.id.in_(coded))
    return stmt.order_by(R.c.id)


def _delete_index(table: Table) -> Delete:
    return delete(table).where(
        table.c.tenant_id == bindparam("b_tenant"),
        table.c.res_type == bindparam("b_type"),
        table.c.res_id == bindparam("b_id"),
    )


READ = {(s, lock): _by_id(scoped=s, lock=lock) for s in (False, True) for lock in (False, True)}
#: The same statements as PostgreSQL text with psycopg's `%(name)s` parameters, for the
#: driver-level path (`StoreConnection._driver_rows`): a GET by id is one of these.
READ_SQL = {key: str(stmt.compile(dialect=PGDialect_psycopg())) for key, stmt in READ.items()}
#: Prebuilt statements with their precompiled PostgreSQL text (`StoreConnection._fetch`).
DRIVER_SQL: dict[Any, str] = {READ[key]: sql for key, sql in READ_SQL.items()}
EXISTING = {s: _existing(scoped=s) for s in (False, True)}


@functools.lru_cache(maxsize=64)
def fetch_many_sql(pairs: int, scoped: bool) -> str:
    """`FETCH_MANY` as PostgreSQL text for `pairs` (type, id) pairs, psycopg parameters
    `b_t0, b_i0, …` (the same `(res_type, id) IN ((…), …)` list SQLAlchemy expands to)."""
    listed = ", ".join(f"(%(b_t{n})s::VARCHAR, %(b_i{n})s::VARCHAR)" for n in range(pairs))
    sql = READ_SQL[(False, False)].split("WHERE", 1)[0]
    sql += "WHERE resources.tenant_id = %(b_tenant)s::VARCHAR"
    sql += f" AND (resources.res_type, resources.id) IN ({listed})"
    return sql + (" AND resources.patient_id = %(b_patient)s::VARCHAR" if scoped else "")


COMPARE_AND_SET = {s: _compare_and_set(scoped=s) for s in (False, True)}
FETCH_MANY = {s: _fetch_many(scoped=s) for s in (False, True)}
OF_PATIENT = {
    (s, st, c): _of_patient(scoped=s, statuses=st, codes=c)
    for s in (False, True)
    for st in (False, True)
    for c in (False, True)
}
DELETE_INDEX = {t: _delete_index(t) for t in INDEX_TABLES}


def driver_statement(stmt: Any, binds: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A prebuilt statement with expanding parameters (`IN` lists) as PostgreSQL text for the
    psycopg path, and the parameters for it: `binds` with each list spread into the names
    SQLAlchemy gives its items (`b_x_1, b_x_2, …`; tuples `b_x_1_1, b_x_1_2, …`). The text
    is compiled once per statement and list lengths (`_expanded`)."""
    lists = tuple(
        (k, len(v), len(v[0]) if v and isinstance(v[0], tuple) else 0)
        for k, v in sorted(binds.items())
        if isinstance(v, list)
    )
    sql, fixed = _expanded(stmt, lists)
    params = {k: v for k, v in binds.items() if not isinstance(v, list)}
    params.update(fixed)
    for key, _n, width in lists:
        for i, item in enumerate(binds[key], 1):
            if width:
                params.update({f"{key}_{i}_{j}": part for j, part in enumerate(item, 1)})
            else:
                params[f"{key}_{i}"] = item
    return sql, params


@functools.lru_cache(maxsize=512)
def _expanded(stmt: Any, lists: tuple[tuple[str, int, int], ...]) -> tuple[str, dict[str, Any]]:
    dummy: dict[str, Any] = {b: "" for b in stmt.compile().binds if b.startswith("b_")}
    for key, n, width in lists:
        dummy[key] = [tuple([""] * width) if width else ""] * n
    compiled = stmt.params(**dummy).compile(
        dialect=PGDialect_psycopg(), compile_kwargs={"render_postcompile": True}
    )
    # Literal values the statement carries (e.g. `param = 'code'`), under their own names.
    sql = str(compiled)
    fixed = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if not name.startswith("b_") and f"%({name})s" in sql and not bind.expanding
    }
    return sql, fixed


INSERT = {t: insert(t) for t in WRITE_ORDER}
#: Two fixed statements, each prepared once: without audit rows (a write outside any
#: audited request: seeding, imports) the audit table is not named at all.
PG_FLUSH = FlushStatement(WRITE_ORDER[:-1])
PG_FLUSH_AUDITED = FlushStatement(WRITE_ORDER)
CLAIM_KEY = {
    # An INSERT's rowcount is only kept on request (SQLAlchemy 2.x `preserve_rowcount`).
    "postgresql": pg_insert(CK).on_conflict_do_nothing().execution_options(preserve_rowcount=True),
    "sqlite": sqlite_insert(CK).on_conflict_do_nothing().execution_options(preserve_rowcount=True),
}
