"""A hook for SQLAlchemy sessions (`pip install 'pgaudit_py[sqlalchemy]'`): each statement a session
runs takes the request being served (pgaudit_py.request_context) into its transaction's
pgaudit_py.* settings, which end with the transaction.

    audit_sessions(Session)            # or a sessionmaker, or AsyncSession's sync_session_class
"""

from __future__ import annotations

import weakref
from typing import Any

try:
    from sqlalchemy import event
    from sqlalchemy.orm import Session, sessionmaker
    from sqlalchemy.sql.expression import ReleaseSavepointClause, RollbackToSavepointClause, SavepointClause
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.sqlalchemy needs SQLAlchemy: pip install "
                      "'pgaudit_py[sqlalchemy]'") from None

from psycopg.pq import TransactionStatus

from pgaudit_py.context import SET_CONTEXT
from pgaudit_py.errors import UnsupportedSession
from pgaudit_py.request_context import settings_of_request

# SQLAlchemy's event.contains answers by id(): a class or connection made where a collected one
# was is taken for it. What is hooked is kept here instead, by identity.
_HOOKED: weakref.WeakSet[Any] = weakref.WeakSet()
_SAVEPOINT_CLAUSES = (SavepointClause, RollbackToSavepointClause, ReleaseSavepointClause)
# In the connection's info: the values its open transaction holds (None: not known to hold any).
_HELD = "pgaudit_py.context_held"


def _after_begin(session: Session, transaction: Any, connection: Any) -> None:
    # In AUTOCOMMIT each statement is a transaction of its own, and the values, set for one, would
    # be gone before the next: its events would name the database role. Refused, nothing run.
    if getattr(connection.connection.dbapi_connection, "autocommit", False):
        raise UnsupportedSession("audit_sessions needs transactions: this session's connection is in "
                                 "AUTOCOMMIT, where the request's values would not reach its statements "
                                 "(use the engine's default isolation level)")
    connection.info[_HELD] = None
    if connection not in _HOOKED:
        _HOOKED.add(connection)
        event.listen(connection, "before_cursor_execute", _before_statement)
        for undone in ("commit", "rollback", "rollback_savepoint"):  # what set the values is undone
            event.listen(connection, undone, _forget)
    _before_statement(connection)


def _before_statement(connection: Any, cursor: Any = None, statement: str = "", parameters: Any = None,
                      context: Any = None, *_: Any) -> None:
    """The request's values, set again when they differ from what the transaction holds: a session
    whose transaction outlives the request that began it (a scoped_session not removed) must not
    attribute the next request's statements, or a job's, to that request. Not before a savepoint's
    own statements: set just before ROLLBACK TO SAVEPOINT, they would be undone by it. Set with a
    cursor of their own (the statement's may be a server-side one, which only declares its query
    until fetched); and held only while the connection is in the transaction they were set in (a
    COMMIT sent as text, or the DBAPI connection's own, ends it behind SQLAlchemy's events)."""
    if isinstance(getattr(getattr(context, "compiled", None), "statement", None), _SAVEPOINT_CLAUSES):
        return
    values = tuple(settings_of_request())
    driver = connection.connection.driver_connection
    held = connection.info.get(_HELD) if driver.info.transaction_status == TransactionStatus.INTRANS else None
    if held != values:
        connection.connection.dbapi_connection.cursor().execute(SET_CONTEXT, values)
        connection.info[_HELD] = values


def _forget(connection: Any, *_: Any) -> None:
    connection.info[_HELD] = None


def audit_sessions(target: type[Session] | sessionmaker[Any]) -> None:
    """Attribute every statement of these sessions to the request being served."""
    if target not in _HOOKED:
        _HOOKED.add(target)
        event.listen(target, "after_begin", _after_begin)
