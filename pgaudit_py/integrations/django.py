"""Middleware for Django (`pip install 'pgaudit_py[django]'`): every query a request runs, on every
database connection of Django's, is attributed to the request's actor, tenant, correlation id and
client address.

    MIDDLEWARE = [..., "pgaudit_py.integrations.django.AuditContextMiddleware"]
    PGAUDIT_CONTEXT = "myapp.audit.request_context"   # a function of the request -> dict

How: a wrapper around each query (connection.execute_wrapper) puts the request's values into the
pgaudit_py.* settings first: inside `transaction.atomic`, transaction-local, before every query (a
round trip each: Django says nothing of where one transaction ends and the next begins, nor of a
savepoint's rollback, which would undo them); in autocommit, where each query is a transaction of its
own, session-wide, when the connection does not hold them already. When the request ends the
session-wide values are cleared, so that a persistent or pooled connection carries nothing to the
next request.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

try:
    from django.conf import settings
    from django.db import connections
    from django.http import HttpRequest, HttpResponse
    from django.utils.module_loading import import_string
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.django needs Django: pip install 'pgaudit_py[django]'") from None

from pgaudit_py.context import CONTEXT_NAMES
from pgaudit_py.request_context import ip_address, serving, settings_of_request

_SET = "SELECT " + ", ".join(f"set_config('pgaudit_py.{n}', %s, {{local}})" for n in CONTEXT_NAMES)
_MARK = "_pgaudit_session_context"  # on Django's connection object: the values its session holds


def _wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    connection = context["connection"]
    values = settings_of_request()
    if connection.in_atomic_block:
        # Before every query of a transaction: Django tells no transaction (nor a savepoint a rollback
        # could undo) from the next, so a mark of our own could not be trusted here.
        context["cursor"].cursor.execute(_SET.format(local="true"), values)
    elif getattr(connection, _MARK, None) != values:
        context["cursor"].cursor.execute(_SET.format(local="false"), values)
        setattr(connection, _MARK, values)
    return execute(sql, params, many, context)


def _clear(connection: Any) -> None:
    if getattr(connection, _MARK, None) is None:
        return
    if connection.connection is not None and not connection.in_atomic_block:
        with connection.connection.cursor() as cursor:
            cursor.execute(_SET.format(local="false"), [""] * len(CONTEXT_NAMES))
    setattr(connection, _MARK, None)


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.context_of: Callable[[HttpRequest], dict[str, str | None]] = import_string(settings.PGAUDIT_CONTEXT)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        values = dict(self.context_of(request))
        values.setdefault("client_addr", ip_address(request.META.get("REMOTE_ADDR")))
        with serving(values), ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(_wrapper))
            try:
                return self.get_response(request)
            finally:
                for alias in connections:
                    _clear(connections[alias])
