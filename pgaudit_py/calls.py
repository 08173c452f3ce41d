"""One way to call a SQL function of the installation, from a Connection or an AsyncConnection:
the query names its columns and casts its arguments, rows become the given dataclass, and JSON
values are read however deep (deep_json).

Types are named as pg_catalog names them (text, jsonb, int4, int8, bool, timestamptz, text[]) and
qualified here: a type the caller's search_path found first (a table owner's `public.text` domain,
whose CHECK runs as whoever casts to it) is never the one cast to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
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


_UNITS = ("microsecond|microseconds|us|usec|usecs|millisecond|milliseconds|ms|msec|msecs|second|seconds|s|sec|secs"
          "|minute|minutes|m|min|mins|hour|hours|h|hr|hrs|day|days|d|week|weeks|w|month|months|mon|mons|year|years"
          "|y|yr|yrs|decade|decades|century|centuries|millennium|millennia|ago")
# An interval as text, word by word (no nested repetition to backtrack through): quantities with
# units ('90 days', '1 day 02:00:00', '90d'), or ISO 8601 ('P90D').
_INTERVAL_WORD = re.compile(rf"[+-]?[0-9]+(?:\.[0-9]+)?(?:{_UNITS})?"
                            rf"|[+-]?[0-9]+:[0-9]+(?::[0-9]+(?:\.[0-9]+)?)?|{_UNITS}|@", re.IGNORECASE)
_ISO_INTERVAL = re.compile(r"P[0-9YMWDTHS.]+", re.IGNORECASE)


def _interval_text(value: str) -> bool:
    words = value.split()
    return bool(words) and (all(_INTERVAL_WORD.fullmatch(w) for w in words)
                            or (len(words) == 1 and _ISO_INTERVAL.fullmatch(words[0]) is not None))


_EXPECTED = {"int2": "an integer", "int4": "an integer", "int8": "an integer", "bool": "True or False",
             "timestamptz": "a datetime", "interval": "a timedelta, or interval text such as '90 days'",
             "text[]": "a list of texts"}


def _of_its_type(type_: str, value: Any) -> bool:
    if type_ in ("int2", "int4", "int8"):
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "bool":
        return isinstance(value, bool)
    if type_ == "timestamptz":
        return isinstance(value, datetime)
    if type_ == "interval":
        return isinstance(value, timedelta) or (isinstance(value, str) and _interval_text(value))
    if type_ == "text[]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return True  # text, jsonb, bytea and regclass (a table's name as text) go as they are


def _values_of_their_types(arguments: dict[str, str], params: Sequence[Any]) -> None:
    """Refused here, not by PostgreSQL's input functions, whose errors (and so the server's log)
    would repeat the text given: a key or a token passed as a batch size or a time, say."""
    for (name, type_), value in zip(arguments.items(), params, strict=True):
        if value is not None and not _of_its_type(type_, value):
            raise InvalidArgument(f"{name} must be {_EXPECTED.get(type_, type_)}")


def _arguments(arguments: dict[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} => %s::{}").format(sql.Identifier(name), catalog_type(type_))
                              for name, type_ in arguments.items())


def function_call(audit_schema: str, function: str, row_type: type[T], arguments: dict[str, str],
                  params: Sequence[Any], casts: dict[str, str] | None = None) -> Call[T]:
    """SELECT <the row type's columns> FROM schema.function(name => %s::pg_catalog.type, ...)."""
    _values_of_their_types(arguments, params)
    query = sql.SQL("SELECT {cols} FROM {s}.{f}({args})").format(
        cols=columns(row_type, casts), s=sql.Identifier(audit_schema), f=sql.Identifier(function),
        args=_arguments(arguments))
    return Call(query, params, row_type)


def value_call(audit_schema: str, function: str, arguments: dict[str, str], params: Sequence[Any]) -> ValueCall:
    """SELECT schema.function(name => %s::pg_catalog.type, ...), for a function that returns one value."""
    _values_of_their_types(arguments, params)
    return ValueCall(sql.SQL("SELECT {s}.{f}({args})").format(
        s=sql.Identifier(audit_schema), f=sql.Identifier(function), args=_arguments(arguments)), params)
