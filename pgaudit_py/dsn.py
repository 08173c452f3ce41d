"""Connecting from a connection string a person typed, without ever repeating its password: libpq
quotes what it cannot parse, and names hosts that may hold half a password (an unencoded `@`)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgaudit_py.errors import CannotConnect


def secrets_in(dsn: str) -> list[str]:
    """Every text of dsn that may be (part of) its password, longest first: the password libpq reads,
    and, in a URI, whatever stands between the user's name and the last `@` and each piece of it
    (an unencoded `@`, `:` or `/` in a password makes libpq read part of it as the host or port)."""
    found: set[str] = set()
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        found.add(str(password))
    uri = re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*://([^:]*):(.*)@", dsn, re.DOTALL)
    if uri:
        written = uri.group(2)
        found.update({written, *(piece for piece in re.split(r"[@:/]", written) if len(piece) >= 3)})
    found.update({unquote(s) for s in found})
    return sorted((s for s in found if s), key=len, reverse=True)


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """psycopg.connect(dsn, **kwargs), or CannotConnect whose message holds nothing of the password."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error:
        raise CannotConnect("cannot connect: libpq cannot read the connection string (--dsn or PGAUDIT_DSN;"
                            " its text is not repeated here, as it may hold a password)") from None
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        for secret in secrets_in(dsn):
            message = message.replace(secret, "***")
        raise CannotConnect(f"cannot connect: {message}") from None
