"""What functions that end transactions themselves ask of the connection they are given."""

from __future__ import annotations

import psycopg
from psycopg.pq import TransactionStatus

from pgaudit_py.errors import InvalidArgument


def require_no_transaction(conn: psycopg.Connection, reason: str) -> None:
    """Refuse a connection with a transaction open: inside the caller's transaction, commits
    would be savepoints (nothing done until it ends) and a snapshot would not be one's own."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise InvalidArgument(f"{reason}: call it with no transaction open")
