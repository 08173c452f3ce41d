"""Middleware for Django (`pip install 'pgaudit_py[django]'`): every query a request runs, on every
database connection of Django's, is attributed to the request's actor, tenant, correlation id and
client address.

    MIDDLEWARE = [..., "pgaudit_py.integrations.django.AuditContextMiddleware"]
    PGAUDIT_CONTEXT = "myapp.audit.request_context"   # a function of the request -> dict

How: a wrapper around each query (connection.execute_wrapper) sets the request's values
transaction-locally first. Inside `transaction.atomic` that is before every query (a round trip
each: Django says nothing of where one transaction ends and the next begins, nor of a savepoint's
rollback); a query in autocommit is run in a transaction of its own for it (BEGIN, the values, the
query, COMMIT). Nothing is ever set for the session, so no connection, persistent, pooled, closed
and reopened mid-request, carries anything to other work. A streamed response's body, which Django
runs after the middleware has returned, is served with the same context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

try:
    from django.conf import settings
    from django.db import connections, transaction
    from django.http import HttpRequest, HttpResponse
    from django.utils.module_loading import import_string
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.django needs Django: pip install 'pgaudit_py[django]'") from None

from pgaudit_py.context import SET_CONTEXT
from pgaudit_py.request_context import RequestContext, ip_address, serving, settings_of_request


def _wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    connection = context["connection"]
    if connection.in_atomic_block:
        context["cursor"].cursor.execute(SET_CONTEXT, settings_of_request())
        return execute(sql, params, many, context)
    with transaction.atomic(using=connection.alias):
        context["cursor"].cursor.execute(SET_CONTEXT, settings_of_request())
        return execute(sql, params, many, context)


@contextmanager
def _serving_queries(values: RequestContext) -> Iterator[None]:
    with serving(values), ExitStack() as stack:
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(_wrapper))
        yield


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
