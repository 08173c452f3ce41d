"""What the package needs of a session it reads from, and how its own connections get it.

psycopg reads timestamps in DateStyle ISO only and intervals in IntervalStyle postgres only, and
decodes json as UTF-8 whatever the client encoding (under LATIN1, "\u00c3\u00a9" would read as
"\u00e9"; under SQL_ASCII, text comes back as bytes). A caller's connection with other settings is
refused before anything is read, never read wrong; the connections the CLI and the HTTP API open
set them for themselves."""

from __future__ import annotations

from typing import Any, overload

import psycopg
from psycopg.pq import Format
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


# The built-in types the package reads, and 0 for those psycopg has no loader of (xid8, regclass, ...),
# read with psycopg's own loaders whatever a caller registered on its connection (an int8 read as
# str, a bytea as text, would break a verdict). JSON apart: the caller's loader decides how its
# numbers read (docs/python.md), and the package reads JSON it compares as text.
_OWN_LOADERS = [(oid, psycopg.adapters.get_loader(oid, Format.TEXT)) for oid in [0] + [
    psycopg.adapters.types[name].oid for name in (
        "bool", "int2", "int4", "int8", "oid", "numeric", "float4", "float8", "text", "varchar", "name", "bpchar",
        "bytea", "uuid", "timestamptz", "timestamp", "date", "time", "interval", "inet", "cidr")]]


def own_loaders(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> None:
    """Read the built-in types on this cursor with psycopg's own loaders (the caller's stay its own).
    Only where the caller put another: registering copies the cursor's map, which every call of a
    wrapper would pay (about 30 microseconds), for loaders nearly every connection has already."""
    adapters = cur.adapters
    for oid, loader in _OWN_LOADERS:
        if loader is not None and adapters.get_loader(oid, Format.TEXT) is not loader:
            adapters.register_loader(oid, loader)


@overload
def tuples(conn: psycopg.Connection[Any]) -> psycopg.Cursor[TupleRow]: ...
@overload
def tuples(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[TupleRow]: ...
def tuples(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Any:
    """A cursor that reads rows as tuples, with psycopg's own loaders: a caller's connection may have
    any row_factory (dict_row, as many applications set) or loaders of its own, and the package reads
    its rows by position."""
    cur = conn.cursor(row_factory=tuple_row)
    own_loaders(cur)
    return cur


def pin(conn: psycopg.Connection) -> None:
    """Set what the package needs on a session of its own."""
    conn.execute(PIN)


async def pin_async(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(PIN)
