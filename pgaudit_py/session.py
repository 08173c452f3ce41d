"""What the package needs of a session it reads from, and how its own connections get it.

psycopg reads timestamps in DateStyle ISO only and intervals in IntervalStyle postgres only, and
decodes json as UTF-8 whatever the client encoding (under LATIN1, "\u00c3\u00a9" would read as
"\u00e9"; under SQL_ASCII, text comes back as bytes). A caller's connection with other settings is
refused before anything is read, never read wrong; the connections the CLI and the HTTP API open
set them for themselves."""

from __future__ import annotations

import json
from typing import Any, overload

import psycopg
from psycopg.abc import Loader
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format
from psycopg.rows import AsyncRowFactory, Row, RowFactory, TupleRow, tuple_row
from psycopg.types.json import set_json_loads

from pgaudit_py.deep_json import JSON_LOADERS, DeepReading
from pgaudit_py.errors import UnsupportedSession

_NEEDED = {"DateStyle": "ISO", "IntervalStyle": "postgres", "client_encoding": "UTF8"}

# For a session the package opened itself; read-write READ COMMITTED transactions too, whatever
# the database's or the role's default, which seal() needs (it refuses another level, and writes).
PIN = ("SELECT pg_catalog.set_config('DateStyle', 'ISO', false),"
       " pg_catalog.set_config('IntervalStyle', 'postgres', false),"
       " pg_catalog.set_config('client_encoding', 'UTF8', false),"
       " pg_catalog.set_config('default_transaction_isolation', 'read committed', false),"
       " pg_catalog.set_config('default_transaction_read_only', 'off', false)")


def require_readable(conn: psycopg.Connection | psycopg.AsyncConnection) -> None:
    """Raise UnsupportedSession unless the session reads as the package needs (no round trip: the
    server reports these settings as they change)."""
    have = {name: conn.info.parameter_status(name) or "" for name in _NEEDED}
    wrong = [name for name, value in _NEEDED.items()
             if not (have[name] == value or (name == "DateStyle" and have[name].startswith("ISO,")))]
    if wrong:
        raise UnsupportedSession(
            "pgaudit_py reads a session with DateStyle ISO, IntervalStyle postgres and client_encoding UTF8;"
            " this one has "
            + ", ".join(f"{name} {have[name]!r}" for name in wrong)
            + " (set them for the connection, e.g. options='-c DateStyle=ISO -c client_encoding=UTF8')")


# psycopg's adapters as the package found them: the package reads and writes through these, not
# through what a caller registered on its connection (an int8 read as str, a text[] as '', a datetime
# sent without its zone, binary loaders of its own would each break a verdict or an answer). A map
# made from it is a copy on write: about a microsecond a cursor.
_PSYCOPGS = AdaptersMap(psycopg.adapters)
# Its JSON loaders read with json.loads, bound here: psycopg's loader class calls whatever function
# set_json_loads last set globally (objects as namespaces, integers as floats would change what the
# package reads of its own snapshots, and what it writes back).
set_json_loads(json.loads, _PSYCOPGS)
_JSON_OIDS = [_PSYCOPGS.types[name].oid for name in ("json", "jsonb")]
# Read through DeepReading: values of any depth, with the loader a map names (the caller's, below).
DeepReading.own = {oid: loader for oid in _JSON_OIDS if (loader := _PSYCOPGS.get_loader(oid, Format.TEXT))}
for _oid in _JSON_OIDS:
    _PSYCOPGS.register_loader(_oid, DeepReading)


def psycopgs_loader(oid: int) -> type[Loader] | None:
    """psycopg's text loader of a type, as the package found it (for a loader that wraps it)."""
    return _PSYCOPGS.get_loader(oid, Format.TEXT)


class _OwnAdapters:
    """A cursor that adapts through a map of the package's, whatever its connection's."""

    _own_adapters: AdaptersMap

    def __init__(self, connection: Any, *args: Any, adapters: AdaptersMap, **kwargs: Any):
        self._own_adapters = adapters  # first: the cursor's own __init__ may read it
        super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]  # the cursor's

    @property
    def adapters(self) -> AdaptersMap:
        return self._own_adapters


class _Cursor(_OwnAdapters, psycopg.Cursor[Any]):
    pass


class _AsyncCursor(_OwnAdapters, psycopg.AsyncCursor[Any]):
    pass


class _ServerCursor(_OwnAdapters, psycopg.ServerCursor[Any]):
    pass


def _adapters(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], callers_json: bool) -> AdaptersMap:
    """psycopg's own adapters; with callers_json, JSON read through the connection's JSON loader
    classes, at any depth (they decide how numbers in what is returned to the caller read:
    docs/python.md). A map made from another is a copy on write: about a microsecond a cursor."""
    adapters = AdaptersMap(_PSYCOPGS)
    if callers_json:
        setattr(adapters, JSON_LOADERS, {oid: conn.adapters.get_loader(oid, Format.TEXT) for oid in _JSON_OIDS})
    return adapters


@overload
def cursor(conn: psycopg.Connection[Any], row_factory: RowFactory[Row], *,
           callers_json: bool = False) -> psycopg.Cursor[Row]: ...
@overload
def cursor(conn: psycopg.AsyncConnection[Any], row_factory: AsyncRowFactory[Row], *,
           callers_json: bool = False) -> psycopg.AsyncCursor[Row]: ...
def cursor(conn: Any, row_factory: Any, *, callers_json: bool = False) -> Any:
    """A cursor of the package's own: psycopg's plain cursor (whatever the connection's
    cursor_factory: a client-side, raw or binary one), in text format, with psycopg's own loaders and
    dumpers (JSON loaders the connection's, reading values of any depth, with callers_json), and the
    rows as row_factory makes them (whatever the connection's row_factory)."""
    adapters = _adapters(conn, callers_json)
    if isinstance(conn, psycopg.AsyncConnection):
        return _AsyncCursor(conn, row_factory=row_factory, adapters=adapters)
    return _Cursor(conn, row_factory=row_factory, adapters=adapters)


def server_cursor(conn: psycopg.Connection[Any], name: str, row_factory: RowFactory[Row]) -> psycopg.ServerCursor[Row]:
    """The same as cursor(), server-side."""
    return _ServerCursor(conn, name, row_factory=row_factory, adapters=_adapters(conn, False))


@overload
def tuples(conn: psycopg.Connection[Any], *, callers_json: bool = False) -> psycopg.Cursor[TupleRow]: ...
@overload
def tuples(conn: psycopg.AsyncConnection[Any], *, callers_json: bool = False) -> psycopg.AsyncCursor[TupleRow]: ...
def tuples(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], *, callers_json: bool = False) -> Any:
    """A cursor of the package's own (cursor()) that reads rows as tuples: the package reads its rows
    by position, whatever the connection's row_factory (dict_row, as many applications set)."""
    return cursor(conn, tuple_row, callers_json=callers_json)


def pin(conn: psycopg.Connection) -> None:
    """Set what the package needs on a session of its own."""
    conn.execute(PIN)


async def pin_async(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(PIN)
