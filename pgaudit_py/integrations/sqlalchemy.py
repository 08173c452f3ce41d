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


def _after_begin(session: Session, transaction: Any, connection: Any) -> None:
    # In AUTOCOMMIT each statement is a transaction of its own, and the values, set for one, would
    # be gone before the next: its events would name the database role. Refused, nothing run.
    if getattr(connection.connection.dbapi_connection, "autocommit", False):
        raise UnsupportedSession("audit_sessions needs transactions: this session's connection is in "
                                 "AUTOCOMMIT, where the request's values would not reach its statements "
                                 "(use the engine's default isolation level)")
    if connection not in _HOOKED:
        _HOOKED.add(connection)
        event.listen(connection, "before_cursor_execute", _before_statement)
    _before_statement(connection)  # for statements run on the DBAPI connection itself too


def _before_statement(connection: Any, *_: Any) -> None:
    """The request's values, set before every statement, with a cursor of their own (the
    statement's may be a server-side one, which only declares its query until fetched). Never
    remembered between statements: any statement may undo them behind SQLAlchemy's events (a
    ROLLBACK TO SAVEPOINT, a COMMIT AND CHAIN or a RESET ALL sent as text), and a transaction may
    outlive the request that began it (a scoped_session not removed). Not in a failed transaction,
    where only its rollback may run."""
    driver = connection.connection.driver_connection
    if driver.info.transaction_status != TransactionStatus.INERROR:
        connection.connection.dbapi_connection.cursor().execute(SET_CONTEXT, tuple(settings_of_request()))


def audit_sessions(target: type[Session] | sessionmaker[Any]) -> None:
    """Attribute every statement of these sessions to the request being served."""
    if target not in _HOOKED:
        _HOOKED.add(target)
        event.listen(target, "after_begin", _after_begin)
