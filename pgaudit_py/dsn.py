"""Connecting from a connection string a person typed, without ever repeating its password. libpq's
messages quote what it cannot parse and name hosts, and a password can end up in either in more
ways than any scrubbing catches (an unencoded `@` or `,` in a URI makes part of it a host, which
psycopg writes escaped; a password that is a word of the message is masked everywhere). So when
the connection string holds a password, libpq's message is not printed at all."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgaudit_py.errors import CannotConnect

# A URI whose user info holds a ':' before an '@': a password, however libpq then splits the rest.
URI_PASSWORD = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://[^:]*:.*@", re.DOTALL)


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """psycopg.connect(dsn, **kwargs), or CannotConnect: with libpq's message when dsn holds no
    password (PGPASSWORD and a password file stay out of it), else without it."""
    try:
        holds_password = bool(conninfo_to_dict(dsn).get("password")) or URI_PASSWORD.match(dsn) is not None
    except psycopg.Error:
        raise CannotConnect("cannot connect: libpq cannot read the connection string (--dsn or PGAUDIT_DSN;"
                            " its text is not repeated here, as it may hold a password)") from None
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        if holds_password:
            raise CannotConnect("cannot connect: libpq's message is withheld, as the connection string holds a"
                                " password it may repeat (give the password in PGPASSWORD or a password file"
                                " instead to see it)") from None
        # Every line, on one: the cause ("Connection refused") is not on libpq's last line, a hint is.
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        raise CannotConnect(f"cannot connect: {message}") from None
