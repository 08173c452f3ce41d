"""A hook for SQLAlchemy sessions (`pip install 'pgaudit_py[sqlalchemy]'`): each transaction a
session begins takes the request being served (pgaudit_py.request_context) into its
pgaudit_py.* settings, which end with the transaction.

    audit_sessions(Session)            # or a sessionmaker, or AsyncSession's sync_session_class
"""

from __future__ import annotations

from typing import Any

try:
    from sqlalchemy import event
    from sqlalchemy.orm import Session, sessionmaker
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.sqlalchemy needs SQLAlchemy: pip install "
                      "'pgaudit_py[sqlalchemy]'") from None

from pgaudit_py.context import SET_CONTEXT
from pgaudit_py.errors import UnsupportedSession
from pgaudit_py.request_context import settings_of_request


def _after_begin(session: Session, transaction: Any, connection: Any) -> None:
    # In AUTOCOMMIT each statement is a transaction of its own, and the values, set for one, would
    # be gone before the next: its events would name the database role. Refused, nothing run.
    if getattr(connection.connection.dbapi_connection, "autocommit", False):
        raise UnsupportedSession("audit_sessions needs transactions: this session's connection is in "
                                 "AUTOCOMMIT, where the request's values would not reach its statements "
                                 "(use the engine's default isolation level)")
    connection.exec_driver_sql(SET_CONTEXT, tuple(settings_of_request()))


def audit_sessions(target: type[Session] | sessionmaker[Any]) -> None:
    """Attribute every transaction of these sessions to the request being served."""
    if not event.contains(target, "after_begin", _after_begin):
        event.listen(target, "after_begin", _after_begin)
