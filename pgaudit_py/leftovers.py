"""Server sessions where a request's own code may have left pgaudit_py.* values for the whole session
(set_config(..., false), SET: a library's doing), which no later work outside the request may take for
its own (tests/test_trust_attacks_72.py, _73.py, _74.py).

The integrations mark the driver connection a request used; the first statement of a transaction on
it outside a request (the integration's wrapper, or the package's own record()) clears the session's
values first, before anything the transaction sets for itself. A clear in autocommit is for good; one
inside a transaction is undone if it rolls back, so the mark stays until then."""

from __future__ import annotations

import weakref
from typing import Any

from pgaudit_py.context import CONTEXT_NAMES

SESSION_CLEARED = "SELECT " + ", ".join(f"pg_catalog.set_config('pgaudit_py.{n}', '', false)" for n in CONTEXT_NAMES)
_IDLE = 0  # no transaction open: psycopg's TransactionStatus.IDLE, psycopg2's alike

_marked: weakref.WeakSet[Any] = weakref.WeakSet()


def mark(driver: Any) -> None:
    """A request is using this driver connection."""
    _marked.add(driver)


def _due(driver: Any) -> bool:
    """Whether the next statement starts a transaction (or is one, in autocommit) on a marked session."""
    return int(driver.info.transaction_status) == _IDLE and driver in _marked


def _cleared(driver: Any, autocommit: bool) -> None:
    """SESSION_CLEARED ran: for good in autocommit, else until the transaction ends. In pipeline mode
    the statements up to the next sync are one transaction, autocommit or not, which a later failure
    in it rolls back, the clear with it (tests/test_trust_attacks_75.py)."""
    if autocommit and not int(getattr(driver.info, "pipeline_status", 0)):
        _marked.discard(driver)


def clear_if_due(driver: Any, autocommit: bool) -> None:
    """Before the next statement on a driver connection (psycopg's or psycopg2's), outside a request:
    the session's leftovers go first, if it is marked and the statement starts a transaction."""
    if _due(driver):
        with driver.cursor() as cursor:  # the driver's own: never a caller's server-side one
            cursor.execute(SESSION_CLEARED)
        _cleared(driver, autocommit)


async def clear_if_due_async(conn: Any) -> None:
    """clear_if_due, for an AsyncConnection."""
    if _due(conn):
        await conn.execute(SESSION_CLEARED)
        _cleared(conn, conn.autocommit)
