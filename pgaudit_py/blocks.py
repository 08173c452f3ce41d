"""Which audit_context blocks are open on each server session, and whether the code running is inside
the innermost one.

A block is its connection's transaction: another thread or asyncio task writing on the connection
while it is open would write as the block's actor (tests/test_trust_attacks_72.py). So each open block
is known by the server session it runs on (the libpq connection, whatever Python object drives it),
and the code inside it by a context variable, which the tasks and threads the block's own code starts
with its context (asyncio.gather, anyio's to_thread) carry."""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from pgaudit_py.errors import UnsupportedSession

_block_ids = itertools.count()
_open: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()
# A write's check and the write itself are one step for other threads and tasks: a block opened
# between them would take the write in, or be taken into its transaction (tests/test_trust_attacks_73.py,
# _74.py). An asyncio task waits on a lock of asyncio's, never a thread's, which would stop its loop.
_locks: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_async_locks: weakref.WeakKeyDictionary[Any, tuple[weakref.ref[asyncio.AbstractEventLoop], asyncio.Lock]] = \
    weakref.WeakKeyDictionary()
_locks_made = threading.Lock()
_inside: ContextVar[frozenset[int]] = ContextVar("pgaudit_py_blocks", default=frozenset())


def _lock_of(session: Any) -> threading.RLock:
    lock = _locks.get(session)
    if lock is None:
        with _locks_made:
            lock = _locks.setdefault(session, threading.RLock())
    return lock


def _async_lock_of(session: Any) -> asyncio.Lock:
    """The session's lock in the running event loop (an asyncio lock serves one loop: a connection
    used from one loop after another, each asyncio.run's, gets a new one; tests/test_trust_attacks_75.py)."""
    loop = asyncio.get_running_loop()
    made = _async_locks.get(session)
    if made is None or made[0]() is not loop:
        made = (weakref.ref(loop), asyncio.Lock())
        _async_locks[session] = made
    return made[1]


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


@asynccontextmanager
async def writing_async(conn: Any) -> AsyncIterator[None]:
    """writing, for an AsyncConnection."""
    async with _async_lock_of(conn.pgconn):
        check_holder(conn)
        yield


def _register(conn: Any) -> int:
    check_holder(conn)
    block = next(_block_ids)
    _open.setdefault(conn.pgconn, []).append(block)
    _inside.set(_inside.get() | {block})
    return block


def _unregister(conn: Any, block: int) -> None:
    _open[conn.pgconn].remove(block)
    _inside.set(_inside.get() - {block})  # not reset(): blocks may end out of order


@contextmanager
def held(conn: Any) -> Iterator[None]:
    """The block's code, for check_holder, while it is open."""
    with _lock_of(conn.pgconn):
        block = _register(conn)
    try:
        yield
    finally:
        _unregister(conn, block)


@asynccontextmanager
async def held_async(conn: Any) -> AsyncIterator[None]:
    """held, for an AsyncConnection."""
    async with _async_lock_of(conn.pgconn):
        block = _register(conn)
    try:
        yield
    finally:
        _unregister(conn, block)
