"""Who is acting: transaction-local pgaudit_py.* settings that record() and capture read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from pgaudit_py import blocks
from pgaudit_py.session import tuples
from pgaudit_py.transactions import synced

CONTEXT_NAMES = ("actor_type", "actor_id", "tenant_id", "correlation_id", "client_addr")
# Qualified, as all the package's SQL: the caller's search_path may name a table owner's schema first.
# Never NULL: set_config with NULL resets to the session's value, which an adapter that sends empty
# text as NULL (or reads it back as None) would bring back.
SET_CONTEXT = "SELECT " + ", ".join(f"pg_catalog.set_config('pgaudit_py.{n}',"
                                    f" coalesce(%s::pg_catalog.text, ''), true)" for n in CONTEXT_NAMES)
GET_CONTEXT = "SELECT " + ", ".join(f"coalesce(pg_catalog.current_setting('pgaudit_py.{n}', true), '')"
                                    for n in CONTEXT_NAMES)


@contextmanager
def audit_context(conn: psycopg.Connection, *, actor_type: str | None = None,
                  actor_id: str | None = None, tenant_id: str | None = None,
                  correlation_id: str | None = None,
                  client_addr: str | None = None) -> Iterator[psycopg.Transaction]:
    """A transaction (a savepoint inside another) in which events are attributed to this actor,
    tenant and correlation id.

    Outside any transaction, the values left out are cleared: nothing carries over from the
    session. Inside one (an enclosing audit_context, or the caller's transaction), the values named
    here override those around the block for the block only: the others are inherited (pass "" to
    clear one), and when the block ends the values from before it are back. The settings are
    transaction-local: nothing outlives the transaction. They are set by the application, never by
    its end users: whoever can run SQL on the connection can set them too.
    """
    named = (actor_type, actor_id, tenant_id, correlation_id, client_addr)
    synced(conn)  # what the server is in, not a statement still on its way
    with blocks.held(conn), conn.transaction() as tx, tuples(conn) as cursor:  # not the caller's row_factory
        # Whether it began the transaction, as psycopg decided under the connection's lock: the
        # status read before it may be another thread's statement (tests/test_trust_attacks_73.py).
        outermost = not tx.savepoint_name  # "" for the transaction itself
        before: Sequence[str] = ("",) * len(CONTEXT_NAMES)
        if not outermost:
            row = cursor.execute(GET_CONTEXT).fetchone()
            assert row is not None
            before = row
        values = [own if own is not None else outer for own, outer in zip(named, before, strict=True)]
        cursor.execute(SET_CONTEXT, values)
        yield tx
        if not outermost:
            # The enclosing transaction goes on: the block's values end with it. (A failed block needs
            # nothing: rolling back its savepoint undoes set_config.)
            cursor.execute(SET_CONTEXT, list(before))
