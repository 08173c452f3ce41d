"""Middleware for ASGI applications (Starlette, FastAPI; `pip install 'pgaudit_py[asgi]'`): the
application says, with one function of the request, who is acting; every transaction the request
runs through `pgaudit_py.request_context` (the SQLAlchemy hook, `transaction()`) records it.

    app.add_middleware(AuditContextMiddleware, context=lambda request: {
        "actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant")})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

try:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("pgaudit_py.integrations.asgi needs Starlette: pip install 'pgaudit_py[asgi]'") from None

from pgaudit_py.request_context import RequestContext, ip_address, serving

ContextOf = Callable[[HTTPConnection], RequestContext | Mapping[str, str | None]]


class AuditContextMiddleware:
    """A plain ASGI middleware (not BaseHTTPMiddleware), so the context reaches the endpoint and
    everything it awaits. `context(request)` gives actor_type, actor_id, tenant_id and
    correlation_id (any of them); the client's address is the connection's unless it says one."""

    def __init__(self, app: ASGIApp, context: ContextOf):
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)
        given = self.context(request)
        values: dict[str, Any] = dict(given.__dict__ if isinstance(given, RequestContext) else given)
        if not values.get("client_addr") and request.client:
            values["client_addr"] = ip_address(request.client.host)
        with serving(values):
            await self.app(scope, receive, send)
