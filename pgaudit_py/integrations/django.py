"""Middleware for Django (`pip install 'pgaudit_py[django]'`): every query a request runs, on every
database connection of Django's, is attributed to the request's actor, tenant, correlation id and
client address.

    MIDDLEWARE = [..., "pgaudit_py.integrations.django.AuditContextMiddleware"]
    PGAUDIT_CONTEXT = "myapp.audit.request_context"   # a function of the request -> dict

How: a wrapper around each query (connection.execute_wrapper), put on every connection Django
opens (the connection_created signal, in whatever thread: a request's work in another thread, an
async body's sync_to_async, a thread started with the request's context), sets the values of the
request being served, if any (request_context, a context variable), transaction-locally first, on
a cursor of its own (a QuerySet.iterator()'s server-side cursor would only declare it). Inside
`transaction.atomic` that is before every query (a round trip each: Django says nothing of where
one transaction ends and the next begins, nor of a savepoint's rollback), but in a transaction
already failed (whose next statement is its rollback); a query in autocommit is run in a
transaction of its own for it (BEGIN, the values, the query, COMMIT). Nothing of a request is ever
set for the session (a connection just opened starts with the session's values cleared), so no
connection, persistent, pooled, closed and reopened mid-request, carries anything to other work;
what a request's own code set for the session is cleared outside a request, before the first
statement of each transaction on a driver connection a request used.
A streamed response's body, which Django runs after the middleware has returned, is served with
the same context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from django.conf import settings
    from django.db import connections, transaction
    from django.db.backends.signals import connection_created
    from django.http import HttpRequest, HttpResponse
    from django.utils.module_loading import import_string
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.django needs Django: pip install 'pgaudit_py[django]'") from None

from pgaudit_py import leftovers
from pgaudit_py.context import SET_CONTEXT
from pgaudit_py.request_context import RequestContext, current, ip_address, serving, settings_of_request

_FAILED = 3  # the transaction status of psycopg (TransactionStatus.INERROR) and psycopg2 alike


def _set_values(connection: Any, values: list[str]) -> None:
    with connection.connection.cursor() as cursor:  # the driver's own: never the query's (server-side) one
        cursor.execute(SET_CONTEXT, values)


def _wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    served = current()
    connection = context["connection"]
    driver = connection.connection
    status = int(driver.info.transaction_status)
    autocommit = not connection.in_atomic_block and connection.get_autocommit()
    if served is not None:
        leftovers.mark(driver)  # what the request's own code sets for the session may outlive it
    else:
        # Outside a request, on a connection a request used (a pool may hand it to another thread): what
        # the request's code set for the session goes before this transaction sets anything itself.
        leftovers.clear_if_due(driver, autocommit)
    # In a transaction that goes on after the query (atomic, or AUTOCOMMIT off, where Django's own
    # transaction stays open), the values stay in it too.
    if not autocommit:
        # Outside a request, clear what this transaction was given in one (a thread the request
        # started may go on in it after the request has ended); otherwise there is nothing to clear.
        if status != _FAILED and (served is not None or getattr(connection, "_pgaudit_py_set", False)):
            _set_values(connection, settings_of_request())  # nobody's outside a request
            connection._pgaudit_py_set = served is not None
        return execute(sql, params, many, context)
    connection._pgaudit_py_set = False  # no transaction goes on
    if served is None:  # no request (or it has ended): nobody to name
        return execute(sql, params, many, context)
    with transaction.atomic(using=connection.alias):
        _set_values(connection, served.values())
        return execute(sql, params, many, context)


def _wrap(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """The wrapper on this connection, outermost: an application's own execute_wrapper block, which
    takes off the last wrapper when it ends, takes off its own. On a connection just opened, in
    autocommit, its session's values are cleared first: what it holds (its DSN's options, a role's
    settings) is no one's request's."""
    if kwargs.get("signal") is connection_created and connection.get_autocommit():
        with connection.connection.cursor() as cursor:
            cursor.execute(leftovers.SESSION_CLEARED)
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _wrapper)


connection_created.connect(_wrap, dispatch_uid="pgaudit_py.integrations.django")


@contextmanager
def _serving_queries(values: RequestContext) -> Iterator[None]:
    try:
        with serving(values):
            for alias in connections:  # connections opened before this module was imported, in this thread
                _wrap(connection=connections[alias])
            yield
    finally:
        # Every connection of this thread the request's code may have used, through Django's wrapped
        # cursors or not (callproc, the driver's own connection: tests/test_trust_attacks_75.py).
        for alias in connections:
            if connections[alias].connection is not None:
                leftovers.mark(connections[alias].connection)


def _streamed(values: RequestContext, content: Any) -> Any:
    if hasattr(content, "__aiter__"):
        async def chunks() -> AsyncIterator[Any]:
            with _serving_queries(values):
                async for chunk in content:
                    yield chunk
        return chunks()

    def sync_chunks() -> Iterator[Any]:
        with _serving_queries(values):
            yield from content
    return sync_chunks()


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.context_of: Callable[[HttpRequest], dict[str, str | None]] = import_string(settings.PGAUDIT_CONTEXT)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = dict(self.context_of(request))
        given["client_addr"] = ip_address(given.get("client_addr") or request.META.get("REMOTE_ADDR"))
        values = RequestContext(**given)
        with _serving_queries(values):
            response = self.get_response(request)
        if getattr(response, "streaming", False):
            response.streaming_content = _streamed(values, response.streaming_content)
        return response
