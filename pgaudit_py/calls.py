"""One way to call a SQL function of the installation, from a Connection or an AsyncConnection:
the query names its columns and casts its arguments, rows become the given dataclass, and JSON
values are read however deep (deep_json).

Types are named as pg_catalog names them (text, jsonb, int4, int8, bool, timestamptz, text[]) and
qualified here: a type the caller's search_path found first (a table owner's `public.text` domain,
whose CHECK runs as whoever casts to it) is never the one cast to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from pgaudit_py.deep_json import read_deep
from pgaudit_py.errors import InvalidArgument, translated
from pgaudit_py.session import require_readable

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    query: sql.Composed
    params: Sequence[Any]
    row_type: type[T]

    def one(self, conn: psycopg.Connection) -> T:
        require_readable(conn)
        with translated(), conn.cursor(row_factory=class_row(self.row_type)) as cur:
            read_deep(cur)
            row = cur.execute(self.query, self.params).fetchone()
        assert row is not None
        return row

    def all(self, conn: psycopg.Connection) -> list[T]:
        require_readable(conn)
        with translated(), conn.cursor(row_factory=class_row(self.row_type)) as cur:
            read_deep(cur)
            return cur.execute(self.query, self.params).fetchall()

    async def one_async(self, conn: psycopg.AsyncConnection) -> T:
        require_readable(conn)
        with translated():
            async with conn.cursor(row_factory=class_row(self.row_type)) as cur:
                read_deep(cur)
                await cur.execute(self.query, self.params)
                row = await cur.fetchone()
        assert row is not None
        return row

    async def all_async(self, conn: psycopg.AsyncConnection) -> list[T]:
        require_readable(conn)
        with translated():
            async with conn.cursor(row_factory=class_row(self.row_type)) as cur:
                read_deep(cur)
                await cur.execute(self.query, self.params)
                return await cur.fetchall()


@dataclass(frozen=True)
class ValueCall:
    """A call of a function that returns one value."""
    query: sql.Composed
    params: Sequence[Any]

    def one(self, conn: psycopg.Connection) -> Any:
        require_readable(conn)
        with translated(), conn.cursor() as cur:
            read_deep(cur)
            row = cur.execute(self.query, self.params).fetchone()
        assert row is not None
        return row[0]

    async def one_async(self, conn: psycopg.AsyncConnection) -> Any:
        require_readable(conn)
        with translated():
            async with conn.cursor() as cur:
                read_deep(cur)
                row = await (await cur.execute(self.query, self.params)).fetchone()
        assert row is not None
        return row[0]


def catalog_type(name: str) -> sql.Composable:
    """pg_catalog's type `name` (int4, not integer), or an array of it (text[])."""
    base, brackets, rest = name.partition("[]")
    assert not rest, name
    return sql.SQL("{}.{}{}").format(sql.Identifier("pg_catalog"), sql.Identifier(base), sql.SQL(brackets))


def columns(row_type: type, casts: dict[str, str] | None = None) -> sql.Composed:
    """The dataclass's fields as a select list, with a cast (to a pg_catalog type) where psycopg has
    no loader."""
    casts = casts or {}
    return sql.SQL(", ").join(
        sql.SQL("{}::{} AS {}").format(sql.Identifier(name), catalog_type(casts[name]), sql.Identifier(name))
        if name in casts else sql.Identifier(name)
        for name in (f.name for f in fields(row_type)))


def table_read(audit_schema: str, relation: str, row_type: type[T], *, where: str = "", order_by: str = "",
               params: Sequence[Any] = ()) -> Call[T]:
    """SELECT <the row type's columns> FROM schema.relation [WHERE ...] [ORDER BY ...]: where and
    order_by are the caller's own constant SQL, never user text (which goes in params), with every
    name in them qualified (`batch_id OPERATOR(pg_catalog.=) %s`)."""
    query = sql.SQL("SELECT {cols} FROM {s}.{r}{where}{order}").format(
        cols=columns(row_type), s=sql.Identifier(audit_schema), r=sql.Identifier(relation),
        where=sql.SQL(" WHERE " + where if where else ""), order=sql.SQL(" ORDER BY " + order_by if order_by else ""))
    return Call(query, params, row_type)


INTEGERS = ("int2", "int4", "int8")


def _integers_are_integers(arguments: dict[str, str], params: Sequence[Any]) -> None:
    """Refused here, not by PostgreSQL's integer input, whose error (and so the server's log) would
    repeat the text given: a key or a token passed as a batch size, say."""
    for (name, type_), value in zip(arguments.items(), params, strict=True):
        if type_ in INTEGERS and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidArgument(f"{name} must be an integer")


def _arguments(arguments: dict[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} => %s::{}").format(sql.Identifier(name), catalog_type(type_))
                              for name, type_ in arguments.items())


def function_call(audit_schema: str, function: str, row_type: type[T], arguments: dict[str, str],
                  params: Sequence[Any], casts: dict[str, str] | None = None) -> Call[T]:
    """SELECT <the row type's columns> FROM schema.function(name => %s::pg_catalog.type, ...)."""
    _integers_are_integers(arguments, params)
    query = sql.SQL("SELECT {cols} FROM {s}.{f}({args})").format(
        cols=columns(row_type, casts), s=sql.Identifier(audit_schema), f=sql.Identifier(function),
        args=_arguments(arguments))
    return Call(query, params, row_type)


def value_call(audit_schema: str, function: str, arguments: dict[str, str], params: Sequence[Any]) -> ValueCall:
    """SELECT schema.function(name => %s::pg_catalog.type, ...), for a function that returns one value."""
    _integers_are_integers(arguments, params)
    return ValueCall(sql.SQL("SELECT {s}.{f}({args})").format(
        s=sql.Identifier(audit_schema), f=sql.Identifier(function), args=_arguments(arguments)), params)
