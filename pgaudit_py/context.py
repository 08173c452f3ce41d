"""Who is acting: transaction-local pgaudit_py.* settings that record() and capture read."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import psycopg
from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg.rows import tuple_row

from pgaudit_py.errors import UnsupportedSession

CONTEXT_NAMES = ("actor_type", "actor_id", "tenant_id", "correlation_id", "client_addr")
# Qualified, as all the package's SQL: the caller's search_path may name a table owner's schema first.
# Never NULL: set_config with NULL resets to the session's value, which an adapter that sends empty
# text as NULL (or reads it back as None) would bring back.
SET_CONTEXT = "SELECT " + ", ".join(f"pg_catalog.set_config('pgaudit_py.{n}',"
                                    f" coalesce(%s::pg_catalog.text, ''), true)" for n in CONTEXT_NAMES)
GET_CONTEXT = "SELECT " + ", ".join(f"coalesce(pg_catalog.current_setting('pgaudit_py.{n}', true), '')"
                                    for n in CONTEXT_NAMES)

# A block is its connection's transaction: another thread or asyncio task writing on the connection
# while it is open would write as the block's actor (tests/test_trust_attacks_72.py). So each open
# block is known by its connection, and the code inside it by a context variable, which the tasks
# and threads the block's own code starts with its context (asyncio.gather, anyio's to_thread) carry.
_block_ids = itertools.count()
_open_blocks: weakref.WeakKeyDictionary[object, list[int]] = weakref.WeakKeyDictionary()
_inside: ContextVar[frozenset[int]] = ContextVar("pgaudit_py_blocks", default=frozenset())


def check_block_holder(conn: object) -> None:
    """UnsupportedSession when the connection's innermost open block is not one this code is inside."""
    held = _open_blocks.get(conn)
    if held and held[-1] not in _inside.get():
        raise UnsupportedSession(
            "this connection is inside another thread's or task's audit_context block, whose transaction "
            "it is: what ran here would be that block's actor's; use a connection of its own")


@contextmanager
def held_block(conn: object) -> Iterator[None]:
    """The block's code, for check_block_holder, while it is open."""
    check_block_holder(conn)
    block = next(_block_ids)
    _open_blocks.setdefault(conn, []).append(block)
    _inside.set(_inside.get() | {block})
    try:
        yield
    finally:
        _open_blocks[conn].remove(block)
        _inside.set(_inside.get() - {block})  # not reset(): blocks may end out of order


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
    if conn.info.pipeline_status != PipelineStatus.OFF:
        with conn.pipeline() as pipeline:  # what the server is in, not a statement still on its way
            pipeline.sync()
    outermost = conn.info.transaction_status == TransactionStatus.IDLE
    with held_block(conn), conn.transaction() as tx, conn.cursor(row_factory=tuple_row) as cursor:  # not the caller's
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
