"""What functions that end transactions themselves ask of the connection they are given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import psycopg
from psycopg.pq import PipelineStatus, TransactionStatus

from pgaudit_py.errors import InvalidArgument
from pgaudit_py.session import require_readable


def end_failed_transaction(conn: psycopg.Connection) -> bool:
    """Roll back a failed implicit transaction; True when no failed one is left. Inside the caller's
    transaction block psycopg forbids it (False): the block's own rollback ends it."""
    if conn.info.transaction_status == TransactionStatus.INERROR:
        with suppress(psycopg.ProgrammingError):
            conn.rollback()
    return conn.info.transaction_status != TransactionStatus.INERROR


async def end_failed_transaction_async(conn: psycopg.AsyncConnection) -> bool:
    """As end_failed_transaction, for an AsyncConnection."""
    if conn.info.transaction_status == TransactionStatus.INERROR:
        with suppress(psycopg.ProgrammingError):
            await conn.rollback()
    return conn.info.transaction_status != TransactionStatus.INERROR


def synced(conn: psycopg.Connection) -> None:
    """In pipeline mode, sync first: the transaction status is then what the server is in, not that
    of statements still on their way (which would share the transaction begun next)."""
    if conn.info.pipeline_status != PipelineStatus.OFF:
        with conn.pipeline() as pipeline:
            pipeline.sync()


async def synced_async(conn: psycopg.AsyncConnection) -> None:
    """As synced, for an AsyncConnection."""
    if conn.info.pipeline_status != PipelineStatus.OFF:
        async with conn.pipeline() as pipeline:
            await pipeline.sync()


def require_no_transaction(conn: psycopg.Connection, reason: str) -> None:
    """Refuse a connection with a transaction open: inside the caller's transaction, commits
    would be savepoints (nothing done until it ends) and a snapshot would not be one's own."""
    synced(conn)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise InvalidArgument(f"{reason}: call it with no transaction open")


# seal() and a baseline run only at READ COMMITTED (each statement must see what others committed
# since the last). A role's or the database's default_transaction_isolation may be another: where the
# call begins the transaction (no transaction open, and no level chosen with psycopg's
# isolation_level), it begins it at READ COMMITTED. On a connection that is not autocommit that
# transaction stays the caller's to end, as before. A level the caller chose, or the caller's own
# transaction, is left as it is, and the database refuses another (trial 77: it was changed behind
# the caller's back).
_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"


@contextmanager
def read_committed_transaction(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction block at READ COMMITTED (the connection has none open)."""
    with conn.transaction():
        conn.execute(_READ_COMMITTED)
        yield


@contextmanager
def read_committed(conn: psycopg.Connection) -> Iterator[None]:
    """Run the block at READ COMMITTED where it begins the transaction (see above)."""
    if conn.info.transaction_status != TransactionStatus.IDLE or conn.isolation_level is not None:
        yield
    elif conn.autocommit:
        with read_committed_transaction(conn):
            yield
    else:
        require_readable(conn)  # refused before anything is sent: else the refusal would leave it open
        conn.execute(_READ_COMMITTED)  # begins the caller's transaction
        yield


@asynccontextmanager
async def read_committed_async(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """As read_committed, for an AsyncConnection."""
    if conn.info.transaction_status != TransactionStatus.IDLE or conn.isolation_level is not None:
        yield
    elif conn.autocommit:
        async with conn.transaction():
            await conn.execute(_READ_COMMITTED)
            yield
    else:
        require_readable(conn)
        await conn.execute(_READ_COMMITTED)
        yield
