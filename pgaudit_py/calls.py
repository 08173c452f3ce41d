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

from pgaudit_py.errors import InvalidArgument, translated
from pgaudit_py.session import cursor, require_readable, tuples

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    query: sql.Composed
    params: Sequence[Any]
    row_type: type[T]

    def one(self, conn: psycopg.Connection) -> T:
        require_readable(conn)
        with translated(), cursor(conn, class_row(self.row_type), callers_json=True) as cur:
            row = cur.execute(self.query, self.params).fetchone()
        assert row is not None
        return row

    def all(self, conn: psycopg.Connection) -> list[T]:
        require_readable(conn)
        with translated(), cursor(conn, class_row(self.row_type), callers_json=True) as cur:
            return cur.execute(self.query, self.params).fetchall()

    async def one_async(self, conn: psycopg.AsyncConnection) -> T:
        require_readable(conn)
        with translated():
            async with cursor(conn, class_row(self.row_type), callers_json=True) as cur:
                await cur.execute(self.query, self.params)
                row = await cur.fetchone()
        assert row is not None
        return row

    async def all_async(self, conn: psycopg.AsyncConnection) -> list[T]:
        require_readable(conn)
        with translated():
            async with cursor(conn, class_row(self.row_type), callers_json=True) as cur:
                await cur.execute(self.query, self.params)
                return await cur.fetchall()


@dataclass(frozen=True)
class ValueCall:
    """A call of a function that returns one value."""
    query: sql.Composed
    params: Sequence[Any]

    def one(self, conn: psycopg.Connection) -> Any:
        require_readable(conn)
        with translated(), tuples(conn, callers_json=True) as cur:
            row = cur.execute(self.query, self.params).fetchone()
        assert row is not None
        return row[0]

    async def one_async(self, conn: psycopg.AsyncConnection) -> Any:
        require_readable(conn)
        with translated():
            async with tuples(conn, callers_json=True) as cur:
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


# Interval text that PostgreSQL's input takes without an error (which would repeat the text): each
# unit no longer than a year at most once, with a quantity of at most six digits ('90 days', '1 day
# 2 hours', '90d', '3 days ago'), or ISO 8601 ('P90D', 'PT12H'). Other forms: a timedelta.
_UNITS = {"microsecond": "microseconds|microsecond|usecs|usec|us",
          "millisecond": "milliseconds|millisecond|msecs|msec|ms", "second": "seconds|second|secs|sec|s",
          "minute": "minutes|minute|mins|min|m", "hour": "hours|hour|hrs|hr|h",
          "day": "days|day|d", "week": "weeks|week|w", "month": "months|month|mons|mon", "year": "years|year|yrs|yr|y"}
_QUANTITY = re.compile(r" *[+-]?[0-9]{1,6}(?:\.[0-9]{1,6})? ?(" + "|".join(_UNITS.values()) + r")(?= |$)",
                       re.IGNORECASE | re.ASCII)  # ASCII: 'ſ' is no 's' to PostgreSQL
_FRACTION_SETS = {"second": ["millisecond", "microsecond"], "millisecond": ["microsecond"]}  # what a fraction fills
_UNIT_OF = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings.split("|")}
_ISO_INTERVAL = re.compile(r"P(?=.*[0-9])(?:[0-9]{1,6}Y)?(?:[0-9]{1,6}M)?(?:[0-9]{1,6}W)?(?:[0-9]{1,6}D)?"
                           r"(?:T(?=[0-9])(?:[0-9]{1,6}H)?(?:[0-9]{1,6}M)?(?:[0-9]{1,6}(?:\.[0-9]{1,6})?S)?)?")


def _interval_text(value: str) -> bool:
    if _ISO_INTERVAL.fullmatch(value):
        return True
    text = value.removesuffix(" ago").rstrip(" ")
    units, at = [], 0
    while (quantity := _QUANTITY.match(text, at)) is not None:
        unit = _UNIT_OF[quantity[1].lower()]
        units += [unit, *_FRACTION_SETS.get(unit, [])] if "." in quantity[0] else [unit]
        at = quantity.end()
    return bool(units) and at == len(text) and len(set(units)) == len(units)


# The integers each type holds: one past them would be refused by the cast, as the database's error.
_INT_BITS = {"int2": 16, "int4": 32, "int8": 64}
# bigint's largest: a seq, intake id or Last-Event-ID past it is bad input, not the database's error.
MAX_SEQ = 2 ** (_INT_BITS["int8"] - 1) - 1
_EXPECTED = {**{t: f"an integer from {-2 ** (n - 1)} to {2 ** (n - 1) - 1}" for t, n in _INT_BITS.items()},
             "bool": "True or False",
             "timestamptz": "a datetime", "interval": "a timedelta, or interval text such as '90 days'",
             "text[]": "a list of texts"}


def _of_its_type(type_: str, value: Any) -> bool:
    if type_ in _INT_BITS:
        half = 2 ** (_INT_BITS[type_] - 1)
        return isinstance(value, int) and not isinstance(value, bool) and -half <= value < half
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
