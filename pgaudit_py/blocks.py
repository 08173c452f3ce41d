"""Which audit_context blocks are open on each server session, and whether the code running is inside
the innermost one.

A block is its connection's transaction: another thread or asyncio task writing on the connection
while it is open would write as the block's actor (tests/test_trust_attacks_72.py). So each open block
is known by the server session it runs on (the libpq connection, whatever Python object drives it),
and the code inside it by a context variable, which the tasks and threads the block's own code starts
with its context (asyncio.gather, anyio's to_thread) carry."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pgaudit_py.errors import UnsupportedSession

_block_ids = itertools.count()
_open: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
# A write's check and the write itself are one step for other threads: a block opened between them
# would take the write in (tests/test_trust_attacks_73.py).
_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_locks_made = threading.Lock()
_inside: ContextVar[frozenset[int]] = ContextVar("pgaudit_py_blocks", default=frozenset())


def _lock_of(session: Any) -> threading.RLock:
    lock = _locks.get(session)
    if lock is None:
        with _locks_made:
            lock = _locks.setdefault(session, threading.RLock())
    return lock


def check_holder(conn: Any) -> None:
    """UnsupportedSession when the connection's innermost open block is not one this code is inside."""
    held = _open.get(conn.pgconn)
    if held and held[-1] not in _inside.get():
        raise UnsupportedSession(
            "this connection is inside another thread's or task's audit_context block, whose transaction "
            "it is: what ran here would be that block's actor's; use a connection of its own")


@contextmanager
def writing(conn: Any) -> Iterator[None]:
    """A write by the package's own functions (record): refused inside another's block, and no block
    of another thread opens on the connection until it is done."""
    with _lock_of(conn.pgconn):
        check_holder(conn)
        yield


@contextmanager
def held(conn: Any) -> Iterator[None]:
    """The block's code, for check_holder, while it is open."""
    session = conn.pgconn
    with _lock_of(session):
        check_holder(conn)
        block = next(_block_ids)
        _open.setdefault(session, []).append(block)
    _inside.set(_inside.get() | {block})
    try:
        yield
    finally:
        _open[session].remove(block)
        _inside.set(_inside.get() - {block})  # not reset(): blocks may end out of order
