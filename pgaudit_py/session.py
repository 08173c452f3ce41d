"""What the package needs of a session it reads from, and how its own connections get it.

psycopg reads timestamps in DateStyle ISO only and intervals in IntervalStyle postgres only, and
decodes json as UTF-8 whatever the client encoding (under LATIN1, "\u00c3\u00a9" would read as
"\u00e9"; under SQL_ASCII, text comes back as bytes). A caller's connection with other settings is
refused before anything is read, never read wrong; the connections the CLI and the HTTP API open
set them for themselves."""

from __future__ import annotations

from typing import Any, overload

import psycopg
from psycopg.rows import TupleRow, tuple_row

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


@overload
def tuples(conn: psycopg.Connection[Any]) -> psycopg.Cursor[TupleRow]: ...
@overload
def tuples(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[TupleRow]: ...
def tuples(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Any:
    """A cursor that reads rows as tuples: a caller's connection may have any row_factory (dict_row,
    as many applications set), and the package reads its rows by position."""
    return conn.cursor(row_factory=tuple_row)


def pin(conn: psycopg.Connection) -> None:
    """Set what the package needs on a session of its own."""
    conn.execute(PIN)


async def pin_async(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(PIN)
