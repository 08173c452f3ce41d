"""What functions that end transactions themselves ask of the connection they are given."""

from __future__ import annotations

from contextlib import suppress

import psycopg
from psycopg.pq import TransactionStatus

from pgaudit_py.errors import InvalidArgument


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


def require_no_transaction(conn: psycopg.Connection, reason: str) -> None:
    """Refuse a connection with a transaction open: inside the caller's transaction, commits
    would be savepoints (nothing done until it ends) and a snapshot would not be one's own."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise InvalidArgument(f"{reason}: call it with no transaction open")
