"""Who is acting: transaction-local pgaudit_py.* settings that record() and capture read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

_SET_CONTEXT = (
    "SELECT set_config('pgaudit_py.actor_type', %s::text, true),"
    " set_config('pgaudit_py.actor_id', %s::text, true),"
    " set_config('pgaudit_py.tenant_id', %s::text, true),"
    " set_config('pgaudit_py.correlation_id', %s::text, true),"
    " set_config('pgaudit_py.client_addr', %s::text, true)"
)


@contextmanager
def audit_context(conn: psycopg.Connection, *, actor_type: str | None = None,
                  actor_id: str | None = None, tenant_id: str | None = None,
                  correlation_id: str | None = None,
                  client_addr: str | None = None) -> Iterator[psycopg.Transaction]:
    """A transaction in which events are attributed to this actor, tenant and correlation id.

    The settings are transaction-local: they end with the outermost transaction. Values left
    out are cleared, so nothing leaks from an earlier context in the same transaction. They are
    set by the application, never by its end users: whoever can run SQL on the connection can
    set them too.
    """
    with conn.transaction() as tx:
        conn.execute(_SET_CONTEXT, (actor_type or "", actor_id or "", tenant_id or "",
                                    correlation_id or "", client_addr or ""))
        yield tx
