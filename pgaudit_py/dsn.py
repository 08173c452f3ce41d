"""Connecting from a connection string a person typed, without ever repeating its password. libpq's
messages quote what it cannot parse and name hosts, and a password can end up in either in more
ways than any scrubbing catches (an unencoded `@` or `,` in a URI makes part of it a host, which
psycopg writes escaped; a password that is a word of the message is masked everywhere). So when
the connection string holds a password, libpq's message is not printed at all. Every connection
pgaudit_py opens from such a string goes through here: `connect`, and `WithheldAsyncConnection` for
`pgaudit serve` (its pool, which logs each failure's message, its LISTEN connection, its verifier)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgaudit_py.errors import CannotConnect

# A URI whose user info holds a ':' before an '@': a password, however libpq then splits the rest.
URI_PASSWORD = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://[^:]*:.*@", re.DOTALL)

UNREADABLE = ("cannot connect: libpq cannot read the connection string, or it is not UTF-8 (--dsn or PGAUDIT_DSN;"
              " its text is not repeated here, as it may hold a password)")
WITHHELD = ("cannot connect: libpq's message is withheld, as the connection string holds a password it may repeat"
            " (give the password in PGPASSWORD or a password file instead to see it)")


def _holds_password(dsn: str) -> bool:
    """Whether dsn holds a password; CannotConnect when libpq cannot read it. The UTF-8 check comes
    first: psycopg encodes the string, and a UnicodeEncodeError holds all of it (repr, args)."""
    try:
        dsn.encode("utf-8")
        return bool(conninfo_to_dict(dsn).get("password")) or URI_PASSWORD.match(dsn) is not None
    except (UnicodeError, psycopg.Error):
        raise CannotConnect(UNREADABLE) from None


def _failure(holds_password: bool, exc: psycopg.Error) -> str:
    if holds_password:
        return WITHHELD
    # Every line, on one: the cause ("Connection refused") is not on libpq's last line, a hint is.
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return f"cannot connect: {message}"


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """psycopg.connect(dsn, **kwargs), or CannotConnect: with libpq's message when dsn holds no
    password (PGPASSWORD and a password file stay out of it), else without it."""
    holds_password = _holds_password(dsn)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        raise CannotConnect(_failure(holds_password, exc)) from None


class WithheldAsyncConnection(psycopg.AsyncConnection[Any]):
    """An async connection whose failure to connect says what `connect` says, as psycopg's
    OperationalError: psycopg_pool logs it and tries again, as it does libpq's."""

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> WithheldAsyncConnection:
        try:
            holds_password = _holds_password(conninfo)
        except CannotConnect as exc:
            raise psycopg.OperationalError(str(exc)) from None
        try:
            return await super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise psycopg.OperationalError(_failure(holds_password, exc)) from None
